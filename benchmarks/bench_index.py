"""Benchmark ``xm_integrations.index.LanceDBIndex`` against exhaustive MaxSim on the same vectors.

For each corpus (``random`` and ``clustered`` token vectors, see :func:`corpus_chunk`) and size:

* **build**: a child process writes the corpus in chunks of ``--chunk`` documents through
  ``LanceDBIndex.add`` and trains the IVF-PQ index (``optimize``); its peak RSS shows whether the
  build memory follows the chunk or the corpus. The vectors are generated chunk by chunk in the
  child, never held whole.
* **sizes**: the IVF-PQ index (what candidate generation reads) and the table's data files (the
  float16 vectors kept for exact re-scoring, plus ids), in bytes per token against float16 vectors.
* **search**: p50/p99 latency of one query at a time, and recall@10 / @100 against exhaustive
  ``xm_integrations.maxsim`` over the whole corpus in memory, for a sweep of ``candidates`` and
  ``nprobes`` (the recall/latency knobs), for LanceDB's own re-scoring (``refine_factor``) instead of
  ours, and for ``exact=True`` (the index's exhaustive scan). ``planted@10``: how often the document
  a query was made from is in its top 10 (what is findable even where recall is ill-defined).
* **baselines**: latency of exhaustive ``xm_integrations.maxsim`` (PackedTokens, float32) and of stock
  ``sentence_transformers.util.similarity.maxsim`` (padded with a mask) over the same corpus.

Random vectors have no structure (every document is about as far from a query as any other);
clustered vectors share topics the way real passages do, so many documents compete for each
query. Run: ``python benchmarks/bench_index.py --sizes 10000,100000 --json benchmarks/results/index_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_common import environment, write_json  # noqa: E402

DIM, QUERY_TOKENS, GEN_CHUNK = 128, 32, 1000
MIN_TOKENS, MAX_TOKENS = 16, 80
TOPICS, WORDS_PER_TOPIC = 500, 40


# ----------------------------------------------------------------------------- data ---------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _vocabulary(seed: int) -> np.ndarray:
    """``TOPICS * WORDS_PER_TOPIC`` word vectors; word ``w`` belongs to topic ``w // WORDS_PER_TOPIC``."""
    rng = np.random.default_rng([seed, 999])
    centers = _unit(rng.standard_normal((TOPICS, DIM)))
    noise = _unit(rng.standard_normal((TOPICS * WORDS_PER_TOPIC, DIM)))
    return _unit(np.repeat(centers, WORDS_PER_TOPIC, axis=0) + 0.6 * noise)


def corpus_chunk(kind: str, start: int, seed: int, vocabulary: np.ndarray | None) -> tuple[list[np.ndarray], list[int]]:
    """Documents ``start .. start + GEN_CHUNK`` (float32, unit tokens) and their topics; the same on every call.

    ``random``: i.i.d. tokens on the sphere. ``clustered``: each document has a topic; 80% of its
    tokens are words of that topic, 20% any word, each with a little noise (cosine ~0.98 to its word).
    """
    rng = np.random.default_rng([seed, start])
    lengths = rng.integers(MIN_TOKENS, MAX_TOKENS + 1, GEN_CHUNK)
    topics = rng.integers(0, TOPICS, GEN_CHUNK)
    documents = []
    for length, topic in zip(lengths, topics):
        if kind == "random":
            documents.append(_unit(rng.standard_normal((length, DIM))))
            continue
        own = topic * WORDS_PER_TOPIC + rng.integers(0, WORDS_PER_TOPIC, length)
        anywhere = rng.integers(0, len(vocabulary), length)
        words = np.where(rng.random(length) < 0.8, own, anywhere)
        documents.append(_unit(vocabulary[words] + 0.2 * _unit(rng.standard_normal((length, DIM)))))
    return documents, topics.tolist()


def make_queries(kind: str, count: int, corpus_size: int, seed: int, vocabulary: np.ndarray | None
                 ) -> tuple[list[np.ndarray], list[str]]:
    """Queries about a random document each (returned with its id, the *planted* answer): half of their
    tokens near its tokens, half from its topic (or random)."""
    rng = np.random.default_rng([seed, 12345])
    queries, targets = [], []
    for target in rng.integers(0, corpus_size, count):
        targets.append(str(int(target)))
        start = int(target) // GEN_CHUNK * GEN_CHUNK
        documents, topics = corpus_chunk(kind, start, seed, vocabulary)
        document, topic = documents[int(target) - start], topics[int(target) - start]
        near = document[rng.integers(0, len(document), QUERY_TOKENS // 2)]
        near = _unit(near + 0.5 * _unit(rng.standard_normal(near.shape)))
        if kind == "random":
            rest = _unit(rng.standard_normal((QUERY_TOKENS - len(near), DIM)))
        else:
            rest = vocabulary[topic * WORDS_PER_TOPIC + rng.integers(0, WORDS_PER_TOPIC, QUERY_TOKENS - len(near))]
        queries.append(np.concatenate([near, rest]).astype(np.float32))
    return queries, targets


def iter_corpus(kind: str, size: int, seed: int):
    vocabulary = _vocabulary(seed) if kind == "clustered" else None
    for start in range(0, size, GEN_CHUNK):
        documents, _ = corpus_chunk(kind, start, seed, vocabulary)
        yield start, documents[: size - start]


# ----------------------------------------------------------------------------- build (child) ------


def build_child(args: argparse.Namespace) -> None:
    """Write the corpus into a new index in chunks, train it, print timings and peak RSS as JSON."""
    from xm_integrations.index import LanceDBIndex

    baseline = _peak_rss_mb()
    index = LanceDBIndex(args.path, min_documents_for_ann=10**12)  # trained explicitly below, timed apart
    t0 = time.perf_counter()
    ids: list[str] = []
    pending: list[np.ndarray] = []
    for start, documents in iter_corpus(args.kind, args.size, args.seed):
        ids += [str(start + i) for i in range(len(documents))]
        pending += documents
        if len(pending) >= args.chunk:
            index.add(ids[: args.chunk], pending[: args.chunk])
            ids, pending = ids[args.chunk:], pending[args.chunk:]
    if pending:
        index.add(ids, pending)
    write_s = time.perf_counter() - t0
    write_peak = _peak_rss_mb()
    t0 = time.perf_counter()
    index.min_documents_for_ann = 1
    index.optimize()
    train_s = time.perf_counter() - t0
    peak = _peak_rss_mb()
    print(json.dumps({"write_s": write_s, "train_s": train_s, "peak_rss_mb": peak, "write_peak_rss_mb": write_peak,
                      "baseline_rss_mb": baseline}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(kind: str, size: int, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--build-child", "--kind", kind, "--size", str(size), "--path", str(path),
               "--chunk", str(args.chunk), "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"build failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- measurements -------


def folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def latencies(call, queries: list[np.ndarray]) -> tuple[list[float], list[Any]]:
    call(queries[0])  # warm caches
    times, outputs = [], []
    for query in queries:
        t0 = time.perf_counter()
        outputs.append(call(query))
        times.append(time.perf_counter() - t0)
    return times, outputs


def planted_at(found: list[list[str]], planted: list[str], k: int) -> float:
    """Share of queries whose planted document (the one the query was made from) is in the top ``k``."""
    return float(np.mean([target in f[:k] for f, target in zip(found, planted)]))


def recall(found: list[list[str]], truth: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]}


def exhaustive(kind: str, size: int, queries: list[np.ndarray], args: argparse.Namespace, recorder: list) -> list[list[str]]:
    """Exhaustive top-100 with xm_integrations.maxsim on the float16-rounded vectors, and stock maxsim's latency."""
    from sentence_transformers.util.similarity import maxsim as stock_maxsim

    from xm_integrations import PackedTokens, maxsim, pad_token_embeddings

    documents = [torch.from_numpy(d.astype(np.float16).astype(np.float32)) for _, chunk in iter_corpus(kind, size, args.seed)
                 for d in chunk]
    packed = PackedTokens.from_list(documents)
    tokens = int(packed.offsets[-1])
    times, scores = latencies(lambda q: maxsim([torch.from_numpy(q)], packed)[0], queries)
    truth = [[str(i) for i in torch.topk(s, 100).indices.tolist()] for s in scores]
    row = {"corpus": kind, "documents": size, "tokens": tokens, "variant": "exhaustive xm maxsim", **summary(times),
           "recall@10": 1.0, "recall@100": 1.0, "planted@10": planted_at(truth, args.planted, 10)}
    recorder.append(row)
    print(json.dumps(row), flush=True)
    padded, mask = pad_token_embeddings(documents)
    del documents
    stock_queries = queries[: args.stock_queries]
    times, _ = latencies(lambda q: stock_maxsim(torch.from_numpy(q).unsqueeze(0), padded, b_mask=mask), stock_queries)
    row = {"corpus": kind, "documents": size, "tokens": tokens, "variant": "exhaustive stock maxsim", **summary(times)}
    recorder.append(row)
    print(json.dumps(row), flush=True)
    return truth


def search_rows(index: Any, kind: str, size: int, queries: list[np.ndarray], truth: list[list[str]], tokens: int,
                args: argparse.Namespace, rows: list) -> None:
    def add(variant: str, times: list[float], found: list[list[str]], **extra: Any) -> None:
        row = {"corpus": kind, "documents": size, "tokens": tokens, "variant": variant, **summary(times),
               "recall@10": recall(found, truth, 10), "recall@100": recall(found, truth, 100) if len(found[0]) >= 100 else None,
               "planted@10": planted_at(found, args.planted[: len(found)], 10), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    for nprobes in args.nprobes:
        index.nprobes = nprobes
        for candidates in args.candidates:
            times, out = latencies(lambda q: index.search(query_embeddings=[q], top_k=100, candidates=candidates)[0],
                                   queries)
            add(f"index candidates={candidates} nprobes={nprobes}", times, [[h["corpus_id"] for h in o] for o in out],
                candidates=candidates, nprobes=nprobes)
        for refine in args.refine:
            def lance_refine(q, refine=refine, nprobes=nprobes):
                return (index.table.search(q, vector_column_name="vectors").distance_type("cosine").limit(100)
                        .nprobes(nprobes).refine_factor(refine).select(["id", "_distance"]).to_arrow()
                        .column("id").to_pylist())
            times, out = latencies(lance_refine, queries)
            add(f"lancedb refine_factor={refine} nprobes={nprobes}", times, out, nprobes=nprobes)
    exact_queries = queries[: args.stock_queries]
    times, out = latencies(lambda q: index.search(query_embeddings=[q], top_k=100, exact=True)[0], exact_queries)
    add("index exact=True (scan)", times, [[h["corpus_id"] for h in o] for o in out])


def run_size(kind: str, size: int, args: argparse.Namespace, rows: list) -> None:
    from xm_integrations.index import LanceDBIndex

    vocabulary = _vocabulary(args.seed) if kind == "clustered" else None
    queries, planted = make_queries(kind, args.queries, size, args.seed, vocabulary)
    args.planted = planted
    work = Path(tempfile.mkdtemp(prefix="xm-bench-index-", dir=args.work_dir))
    try:
        built = build(kind, size, work / "index", args)
        index = LanceDBIndex(work / "index")
        tokens = sum(len(d) for _, chunk in iter_corpus(kind, size, args.seed) for d in chunk)
        vector_index = next(i for i in index.table.list_indices() if i.name == "vectors_idx")
        data_bytes = folder_bytes(work / "index" / "passages.lance" / "data")
        row = {"corpus": kind, "documents": size, "tokens": tokens, "variant": "build", **built,
               "index_bytes_per_token": vector_index.size_bytes / tokens,
               "store_bytes_per_token": data_bytes / tokens, "fp16_bytes_per_token": 2 * DIM,
               "index_vs_fp16": vector_index.size_bytes / (2 * DIM * tokens)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        truth = exhaustive(kind, size, queries, args, rows)
        search_rows(index, kind, size, queries, truth, tokens, args, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[dict]) -> None:
    columns = ("corpus", "documents", "variant", "p50_ms", "p99_ms", "recall@10", "recall@100", "planted@10")
    print("| " + " | ".join(columns) + " | x faster than exhaustive (p50) |")
    print("|" + "---|" * (len(columns) + 1))
    base = {(r["corpus"], r["documents"]): r["p50_ms"] for r in rows if r["variant"] == "exhaustive xm maxsim"}
    for r in rows:
        if r["variant"] == "build":
            continue
        cells = [f"{r.get(c):.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        ratio = base.get((r["corpus"], r["documents"]), 0) / r["p50_ms"]
        print("| " + " | ".join(cells) + f" | {ratio:.1f} |")
    print("\n| corpus | documents | tokens | write s | train s | peak RSS MB: after imports / writing / training | "
          "index B/token | index / fp16 | re-scoring store B/token |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["variant"] == "build":
            writing = f"{r['write_peak_rss_mb']:.0f}" if "write_peak_rss_mb" in r else "-"
            print(f"| {r['corpus']} | {r['documents']} | {r['tokens']} | {r['write_s']:.1f} | {r['train_s']:.1f} | "
                  f"{r['baseline_rss_mb']:.0f} / {writing} / {r['peak_rss_mb']:.0f} | {r['index_bytes_per_token']:.1f} | "
                  f"{r['index_vs_fp16']:.3f} | {r['store_bytes_per_token']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--corpora", default="random,clustered")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--stock-queries", type=int, default=5, help="queries timed for stock maxsim and exact=True")
    parser.add_argument("--candidates", default="100,200,400")
    parser.add_argument("--nprobes", default="20,50")
    parser.add_argument("--refine", default="2,4", help="LanceDB refine_factor values to compare with our re-scoring")
    parser.add_argument("--chunk", type=int, default=2000, help="documents per add (commit) in the build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--table-from", default=None, help="print the tables of a JSON written by --json, run nothing")
    parser.add_argument("--build-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_child:
        build_child(args)
        return
    if args.table_from:
        print_table(json.loads(Path(args.table_from).read_text())["rows"])
        return
    args.candidates = [int(x) for x in args.candidates.split(",")]
    args.nprobes = [int(x) for x in args.nprobes.split(",")]
    args.refine = [int(x) for x in args.refine.split(",") if x]
    rows: list[dict] = []
    for kind in args.corpora.split(","):
        for size in (int(x) for x in args.sizes.split(",")):
            run_size(kind, size, args, rows)
            if args.json:
                write_json(args.json, {"meta": {"environment": environment("cpu")}, "rows": rows})
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
