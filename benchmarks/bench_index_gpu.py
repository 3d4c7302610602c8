"""The index at GPU scale: a 1M-passage ``LanceDBIndex`` built with the GPU's help, then searched.

Two corpora (``--corpus``), same measurements:

* ``text``: synthetic passages (16-80 words, five languages) encoded by a random-weight XMOD-base
  ColBERT-XM on the GPU through ``LanceDBIndex.add_documents`` in chunks of ``--chunk``; queries
  are 12 words of a random passage (the *planted* answer, findable even with random weights).
  Random weights make every token vector of a passage alike, so recall here is not what trained
  vectors give.
* ``clustered``: ``bench_index.py``'s clustered token vectors (documents about one of 500 topics,
  80% of their tokens words of that topic), generated on the GPU and written through
  ``LanceDBIndex.add``: many documents compete for each query, as with real passages. Queries: half
  noisy tokens of a random document, half words of its topic.

Same run, same vectors:

* **build**: passages/s for (encode +) write, this process's peak RSS (it includes the CUDA
  context); the IVF-PQ training (``optimize``), timed apart; the bytes per token of the index
  and of the re-scoring store.
* **search**, one query at a time: exhaustive ``xm_integrations.maxsim`` on the GPU over every
  stored vector (one padded float16 tensor, the fused Triton kernel), stock
  ``sentence_transformers.util.similarity.maxsim`` on the same tensors, and the index at a sweep
  of ``--nprobes`` x ``--candidates`` (``default`` in either: what ``search()`` picks for the
  index's size; re-scoring on the CPU: a few hundred documents are cheaper there than a
  transfer), with recall@10/@100 against the exhaustive top 100.

Run on the GPU host: ``python benchmarks/bench_index_gpu.py --corpus clustered --passages 1000000
--candidates default,600 --nprobes default --json benchmarks/results/index_gpu_clustered.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for entry in (str(REPO), str(REPO / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import bench_common as bc  # noqa: E402
from bench_index import (  # noqa: E402
    DIM,
    MAX_TOKENS,
    MIN_TOKENS,
    QUERY_TOKENS,
    TOPICS,
    WORDS_PER_TOPIC,
    _peak_rss_mb,
    _vocabulary,
    folder_bytes,
    latencies,
    planted_at,
    recall,
    summary,
)

LANGUAGES = ("en_XX", "fr_XX", "de_DE", "es_XX", "it_IT")
MIN_WORDS, MAX_WORDS, QUERY_WORDS, GEN_CHUNK = 16, 80, 12, 10_000


def passage_chunk(start: int, seed: int) -> list[dict[str, str]]:
    """Passages ``start .. start + GEN_CHUNK``, the same on every call (queries regenerate their target)."""
    rng = np.random.default_rng([seed, start])
    vocab = bc.words()
    lengths = rng.integers(MIN_WORDS, MAX_WORDS + 1, GEN_CHUNK)
    ids = rng.integers(0, len(vocab), int(lengths.sum()))
    languages = rng.choice(LANGUAGES, GEN_CHUNK)
    passages, offset = [], 0
    for i, length in enumerate(lengths):
        passages.append({"id": str(start + i), "text": " ".join(vocab[j] for j in ids[offset:offset + length]),
                         "language": str(languages[i])})
        offset += length
    return passages


def iter_passages(count: int, seed: int) -> Iterator[dict[str, str]]:
    for start in range(0, count, GEN_CHUNK):
        yield from passage_chunk(start, seed)[: count - start]


def make_queries(count: int, corpus_size: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Texts of ``QUERY_WORDS`` words drawn from a random passage each, its language, and its id."""
    rng = np.random.default_rng([seed, 777])
    texts, languages, targets = [], [], []
    for target in rng.integers(0, corpus_size, count):
        start = int(target) // GEN_CHUNK * GEN_CHUNK
        passage = passage_chunk(start, seed)[int(target) - start]
        words = passage["text"].split()
        texts.append(" ".join(rng.choice(words, QUERY_WORDS)))
        languages.append(passage["language"])
        targets.append(passage["id"])
    return texts, languages, targets


def clustered_chunk(start: int, seed: int, vocabulary: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Documents ``start .. start + GEN_CHUNK`` of ``bench_index.corpus_chunk``'s clustered distribution, and
    their topics, drawn on ``vocabulary``'s device; the same on every call (queries regenerate their target)."""
    device = vocabulary.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + start)

    def integers(high: int, size: int, low: int = 0) -> torch.Tensor:
        return torch.randint(low, high, (size,), generator=generator, device=device)

    lengths = integers(MAX_TOKENS + 1, GEN_CHUNK, MIN_TOKENS)
    topics = integers(TOPICS, GEN_CHUNK)
    total = int(lengths.sum())
    document = torch.repeat_interleave(torch.arange(GEN_CHUNK, device=device), lengths)
    own = topics[document] * WORDS_PER_TOPIC + integers(WORDS_PER_TOPIC, total)
    words = torch.where(torch.rand(total, generator=generator, device=device) < 0.8, own,
                        integers(len(vocabulary), total))
    noise = F.normalize(torch.randn(total, DIM, generator=generator, device=device), dim=-1)
    tokens = F.normalize(vocabulary[words] + 0.2 * noise, dim=-1)
    return list(tokens.split(lengths.tolist())), topics


def add_clustered(index: Any, count: int, chunk: int, seed: int, vocabulary: torch.Tensor) -> None:
    """Write ``count`` clustered documents (ids ``"0"``, ``"1"``, ...) through ``index.add``, ``chunk`` per commit."""
    ids: list[str] = []
    pending: list[torch.Tensor] = []
    for start in range(0, count, GEN_CHUNK):
        documents = clustered_chunk(start, seed, vocabulary)[0][: count - start]
        ids += [str(start + i) for i in range(len(documents))]
        pending += documents
        while len(pending) >= chunk or (pending and start + GEN_CHUNK >= count):
            index.add(ids[:chunk], pending[:chunk])
            ids, pending = ids[chunk:], pending[chunk:]


def clustered_queries(count: int, corpus_size: int, seed: int, vocabulary: torch.Tensor
                      ) -> tuple[list[torch.Tensor], list[str]]:
    """``bench_index.make_queries``'s clustered queries (float32, CPU) and their planted document ids."""
    rng = np.random.default_rng([seed, 12345])
    queries, targets = [], []
    for target in rng.integers(0, corpus_size, count):
        start = int(target) // GEN_CHUNK * GEN_CHUNK
        documents, topics = clustered_chunk(start, seed, vocabulary)
        document, topic = documents[int(target) - start], int(topics[int(target) - start])
        near = document[torch.from_numpy(rng.integers(0, len(document), QUERY_TOKENS // 2)).to(vocabulary.device)]
        near = F.normalize(near + 0.5 * F.normalize(torch.randn_like(near), dim=-1), dim=-1)
        rest = vocabulary[topic * WORDS_PER_TOPIC
                          + torch.from_numpy(rng.integers(0, WORDS_PER_TOPIC, QUERY_TOKENS - len(near))).to(near.device)]
        queries.append(torch.cat([near, rest]).float().cpu())
        targets.append(str(int(target)))
    return queries, targets


def recording_index(device: str) -> type:
    """A ``LanceDBIndex`` that also keeps every committed chunk's vectors on ``device`` (float16, as stored).

    The exhaustive baseline then scores exactly what the index holds without reading the whole
    table back (tens of GB at 1M passages); the copy lives on the GPU, so the build's peak RSS is
    unchanged.
    """
    from xm_integrations.index import LanceDBIndex

    class RecordingIndex(LanceDBIndex):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.kept: list[tuple[list[str], torch.Tensor, torch.Tensor]] = []

        def _write(self, batch: Any, *, upsert: bool) -> None:
            super()._write(batch, upsert=upsert)
            self.kept.append((list(batch.ids), batch.vectors.tokens.to(device, torch.float16),
                              batch.vectors.offsets.to(device)))

    return RecordingIndex


def padded_on_gpu(kept: list[tuple[list[str], torch.Tensor, torch.Tensor]], dim: int, device: str
                  ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Every kept document as one padded float16 tensor on ``device`` ``(n, max_tokens, dim)`` with its mask."""
    ids = [doc_id for batch_ids, _, _ in kept for doc_id in batch_ids]
    lengths = torch.cat([offsets.diff() for _, _, offsets in kept])
    padded = torch.zeros(len(ids), int(lengths.max()), dim, dtype=torch.float16, device=device)
    mask = torch.zeros(len(ids), int(lengths.max()), dtype=torch.bool, device=device)
    first = 0
    for _, tokens, offsets in kept:
        counts = offsets.diff()
        document = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
        position = torch.arange(len(tokens), device=device) - offsets[:-1][document]
        padded[first + document, position] = tokens
        mask[first + document, position] = True
        first += len(counts)
    return ids, padded, mask


def build_index(args: argparse.Namespace, vocabulary: torch.Tensor, work: Path, add: Any, phase: Any
                ) -> tuple[Any, Any]:
    """Build and train the index of ``args.corpus``; returns it and the model (None for ``clustered``)."""
    from xm_integrations import ColBERTXM

    model = None
    if args.corpus == "text":
        path = bc.build_colbert_xm_checkpoint(work / f"colbert-{args.spec}", bc.SPECS[args.spec])
        model = ColBERTXM(str(path), device=args.device)
        model.encode_document(["warm up"] * 64)
    index = recording_index(args.device)(work / "index", model=model, min_documents_for_ann=10**12,
                                         vector_dtype=args.vector_dtype,
                                         tokens_per_partition=args.tokens_per_partition)
    phase(f"writing {args.passages} {args.corpus} passages")
    t0 = time.perf_counter()
    if model is not None:
        index.add_documents(iter_passages(args.passages, args.seed), chunk_size=args.chunk, show_progress_bar=False)
        variant = "build: GPU encode + write"
    else:
        add_clustered(index, args.passages, args.chunk, args.seed, vocabulary)
        variant = f"build: write clustered vectors (drawn on {args.device})"
    write_s = time.perf_counter() - t0
    add({"variant": variant, "seconds": write_s, "passages_per_s": args.passages / write_s,
         "peak_rss_mb": _peak_rss_mb(), "vector_dtype": args.vector_dtype})
    phase("training the IVF-PQ index")
    t0 = time.perf_counter()
    index.min_documents_for_ann = 1
    index.optimize()
    train_s = time.perf_counter() - t0
    tokens = sum(int(offsets[-1]) for _, _, offsets in index.kept)
    vector_index = next(i for i in index.table.list_indices() if i.name == "vectors_idx")
    add({"variant": "build: IVF-PQ training", "seconds": train_s, "tokens": tokens, "peak_rss_mb": _peak_rss_mb(),
         "index_bytes_per_token": vector_index.size_bytes / tokens,
         "store_bytes_per_token": folder_bytes(work / "index" / "passages.lance" / "data") / tokens,
         "index_vs_fp16": vector_index.size_bytes / (2 * index.record.dim * tokens)})
    return index, model


def make_query_embeddings(args: argparse.Namespace, vocabulary: torch.Tensor, model: Any
                          ) -> tuple[list[torch.Tensor], list[str]]:
    """Query token embeddings (float32, CPU) of ``args.corpus`` and their planted document ids."""
    if model is None:
        return clustered_queries(args.queries, args.passages, args.seed, vocabulary)
    texts, languages, planted = make_queries(args.queries, args.passages, args.seed)
    return [q.float().cpu() for q in model.encode_query(texts, language=languages, show_progress_bar=False)], planted


def search_rows(args: argparse.Namespace, index: Any, queries: list[torch.Tensor], planted: list[str], add: Any
                ) -> None:
    """Exhaustive xm and stock MaxSim on the GPU over every stored vector, then the index's sweep."""
    from sentence_transformers.util.similarity import maxsim as stock_maxsim

    from xm_integrations import maxsim
    from xm_integrations.index import default_candidates, default_nprobes

    ids, padded, mask = padded_on_gpu(index.kept, index.record.dim, args.device)
    index.kept.clear()
    on_gpu = [q.to(args.device, torch.float16).unsqueeze(0) for q in queries]

    def top(scores: torch.Tensor, k: int = 100) -> list[str]:
        return [ids[i] for i in torch.topk(scores.flatten().float(), k).indices.tolist()]

    times, truth = latencies(lambda q: top(maxsim(q, padded, document_mask=mask)), on_gpu)
    add({"variant": f"exhaustive xm maxsim ({args.device})", **summary(times), "recall@10": 1.0,
         "planted@10": planted_at(truth, planted, 10)})
    try:
        times, found = latencies(lambda q: top(stock_maxsim(q, padded, b_mask=mask)), on_gpu[: args.stock_queries])
        add({"variant": f"exhaustive stock maxsim ({args.device})", **summary(times),
             "recall@10": recall(found, truth, 10)})
    except torch.OutOfMemoryError as exc:  # stock materialises (documents, query tokens, doc tokens) scores
        add({"variant": f"exhaustive stock maxsim ({args.device})", "error": str(exc).splitlines()[0]})
    padded = mask = None  # free the GPU copy before the index runs
    bc.free_memory()
    for nprobes in args.nprobes:
        index.nprobes = nprobes
        probes = f"default ({default_nprobes(len(index))})" if nprobes is None else nprobes
        for candidates in args.candidates:
            times, out = latencies(lambda q: [hit["corpus_id"] for hit in
                                              index.search(query_embeddings=[q], top_k=100, candidates=candidates)[0]],
                                   queries)
            label = f"default ({default_candidates(len(index))})" if candidates is None else candidates
            add({"variant": f"index candidates={label} nprobes={probes}", **summary(times),
                 "recall@10": recall(out, truth, 10), "recall@100": recall(out, truth, 100),
                 "planted@10": planted_at(out, planted, 10)})


def _sweep(values: str) -> list[int | None]:
    """Parse a comma-separated sweep; ``default`` stands for None, the library's own choice."""
    return [None if value == "default" else int(value) for value in values.split(",")]


def run(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    def add(row: dict[str, Any]) -> None:
        rows.append({"corpus": args.corpus, "documents": args.passages, **row})
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            bc.write_json(args.json, {"meta": {"environment": bc.environment(args.device), "args": vars(args)},
                                      "rows": rows})

    started = time.perf_counter()

    def phase(name: str) -> None:  # on stderr: a run cut short still shows where its time went
        print(f"[{time.perf_counter() - started:7.1f} s] {name}", file=sys.stderr, flush=True)

    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="xm-bench-index-gpu-", dir=args.work_dir))
    vocabulary = torch.from_numpy(_vocabulary(args.seed)).to(args.device)  # the clustered corpus's words
    torch.manual_seed(args.seed)
    try:
        index, model = build_index(args, vocabulary, work, add, phase)
        phase("searching")
        queries, planted = make_query_embeddings(args, vocabulary, model)
        search_rows(args, index, queries, planted, add)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    base = next((r["p50_ms"] for r in rows if r["variant"].startswith("exhaustive xm")), None)
    print("| corpus | documents | variant | p50 ms | p99 ms | recall@10 | recall@100 | planted@10 | x faster than exhaustive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "p50_ms" in r:
            cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                     for c in ("p50_ms", "p99_ms", "recall@10", "recall@100", "planted@10")]
            ratio = f"{base / r['p50_ms']:.2f}" if base else ""
            print(f"| {r.get('corpus', 'text')} | {r['documents']} | {r['variant']} | " + " | ".join(cells) + f" | {ratio} |")
        else:
            extra = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k not in ("corpus", "documents", "variant")}
            print(f"| {r.get('corpus', 'text')} | {r['documents']} | {r['variant']} | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="text", choices=("text", "clustered"),
                        help="text: passages encoded by a random-weight model; clustered: topic-structured vectors")
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--stock-queries", type=int, default=10)
    parser.add_argument("--candidates", default="100,200,400",
                        help="documents re-scored per query, a sweep; 'default' leaves it to search()")
    parser.add_argument("--nprobes", default="20",
                        help="IVF partitions probed per query token, a sweep (20,50); 'default' leaves it to LanceDB")
    parser.add_argument("--chunk", type=int, default=16384, help="passages per encode-and-commit step")
    parser.add_argument("--vector-dtype", default="float32", choices=("float16", "float32"))
    parser.add_argument("--tokens-per-partition", type=int, default=4096)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--spec", default="base", choices=sorted(bc.SPECS), help="model size (tiny: a CPU smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--table-from", default=None, help="print the table of a JSON written by --json, run nothing")
    args = parser.parse_args()
    if args.table_from:
        print_table(json.loads(Path(args.table_from).read_text())["rows"])
        return
    args.candidates = _sweep(args.candidates)
    args.nprobes = _sweep(args.nprobes)
    rows: list[dict[str, Any]] = []
    run(args, rows)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
