"""Distributed encoding and server-backed search: Ray Data against one process, Qdrant against LanceDB and exhaustive.

Three workloads, each a table of ratios measured in the same run:

* ``ray-cpu``: encoding N passages (``bench_encode``'s mixed-length workload, five languages) with
  ``ColBERTXM.encode_document`` in this process (1 and 2 torch threads) against
  ``encode_with_ray`` on a local Ray cluster of 1 and of 2 nodes (one CPU actor per node, one
  thread each), started in a network namespace (:class:`~xm_integrations.testing.LocalRayCluster`,
  needs root). On a 2-core machine the two nodes share the two cores, so this measures Ray's
  overhead and the actors' parallelism on one host, not multi-host scaling.
* ``ray-gpu``: the same on one GPU: one process against one Ray GPU actor (``num_gpus=1``), an
  xmod-base-size random checkpoint. Ray's figures are given with and without the job's start
  (actor start and model load): the steady rate is the engine's overhead on the encoding.
* ``engines``: search latency (one query at a time, p50/p99) and recall@10 against exhaustive
  ``xm_integrations.maxsim`` on the same stored vectors (the topic-clustered corpus of
  ``bench_index``): ``QdrantIndex`` in qdrant-client's local mode (NumPy, not Qdrant's server
  performance: it shows the client path and the pooled first stage's recall), ``LanceDBIndex``,
  and the exhaustive scan.

    python benchmarks/bench_distributed.py ray-cpu --passages 3000          # this CPU
    python benchmarks/bench_distributed.py ray-gpu --passages 50000         # H200
    python benchmarks/bench_distributed.py engines --size 10000
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

LANGUAGES = ("en_XX", "fr_XX", "de_DE", "es_XX", "it_IT")


def workload(count: int, seed: int = 0) -> list[dict[str, Any]]:
    from bench_encode import make_texts

    texts, languages, _ = make_texts(count, LANGUAGES, seed)
    return [{"id": str(i), "text": text, "language": language} for i, (text, language) in enumerate(zip(texts, languages))]


def checkpoint(args: argparse.Namespace) -> Path:
    spec = bc.SPECS[args.spec]
    return bc.build_colbert_xm_checkpoint(bc.work_dir(args) / f"colbert-{args.spec}", spec)


# ----------------------------------------------------------------------------- Ray encoding -------


def single_process(path: Path, passages: list[dict], device: str, threads: int | None, to_host: bool = False
                   ) -> dict[str, Any]:
    """``encode_document`` over every passage in one call; ``to_host``: as NumPy arrays (what a writer needs)."""
    import torch

    from xm_integrations import ColBERTXM

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = ColBERTXM(str(path), device=device)
    load_s = time.perf_counter() - t0
    texts, languages = [p["text"] for p in passages], [p["language"] for p in passages]
    model.encode_document(texts[:64], language=languages[:64])  # warm-up (CUDA context, kernels)
    bc.sync(device)
    t0 = time.perf_counter()
    model.encode_document(texts, language=languages, convert_to_numpy=to_host)
    bc.sync(device)
    seconds = time.perf_counter() - t0
    return {"load_s": load_s, "encode_s": seconds, "passages_per_s": len(passages) / seconds}


def ray_driver(args: argparse.Namespace) -> None:
    """Inside the cluster (or on the GPU host): one ``encode_with_ray`` job, consumed on the driver; prints JSON."""
    import ray

    from xm_integrations import ColBERTXM
    from xm_integrations.distributed import encode_with_ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.cpus, num_gpus=args.gpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    passages = workload(args.passages)
    model = ColBERTXM(str(checkpoint(args)), device="cpu")
    t0 = time.perf_counter()
    first, rows = None, 0
    # --gpus is the GPUs of the job: its actors share them (two actors on one GPU overlap one's host work
    # with the other's kernels).
    dataset = encode_with_ray(passages, model, num_actors=args.actors, num_gpus=args.gpus / args.actors or None,
                              num_cpus=args.actor_cpus, batch_size=args.ray_batch, vector_dtype=args.vector_dtype)
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        if first is None:
            first, first_rows = time.perf_counter(), batch.num_rows
        rows += batch.num_rows
    total = time.perf_counter() - t0
    steady = time.perf_counter() - first
    print(json.dumps({"rows": rows, "total_s": total, "passages_per_s": rows / total,
                      "steady_passages_per_s": (rows - first_rows) / steady if steady > 0 else float("nan"),
                      "first_batch_s": first - t0}))


def run_ray(args: argparse.Namespace, cluster: Any = None, actors: int = 1, ray_batch: int | None = None,
            actor_cpus: int = 1, vector_dtype: str = "float32") -> dict[str, Any]:
    argv = [sys.executable, __file__, "ray-driver", "--passages", str(args.passages), "--spec", args.spec,
            "--actors", str(actors), "--ray-batch", str(ray_batch or args.ray_batch), "--gpus", str(args.gpus),
            "--cpus", str(args.cpus), "--actor-cpus", str(actor_cpus), "--vector-dtype", vector_dtype,
            "--work-dir", str(bc.work_dir(args))]
    if cluster is not None:
        done = cluster.run([*argv, "--address", cluster.address], timeout=3600)
    else:
        done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"Ray driver failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ray_cpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    from xm_integrations.testing import LocalRayCluster

    path, passages = checkpoint(args), workload(args.passages)
    rows = []
    for threads in (1, 2):
        rows.append({"variant": f"encode_document, 1 process, {threads} thread(s)",
                     **single_process(path, passages, "cpu", threads)})
    for workers in (0, 1):
        with LocalRayCluster(workers=workers, cpus_per_node=1) as cluster:
            rows.append({"variant": f"encode_with_ray, {workers + 1} node(s), {workers + 1} actor(s)",
                         **run_ray(args, cluster, actors=workers + 1)})
    return rows


def ray_gpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant ``--repeats`` times, interleaved (round ``r`` runs each once), so drift shows as spread.

    Each row is printed and written to ``--json`` as it comes, so a run cut short keeps its rows.
    """
    path, passages = checkpoint(args), workload(args.passages)
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            bc.write_json(args.json, {"workload": args.workload, "args": vars(args), "rows": rows})

    for repeat in range(args.repeats):
        suffix = f" (round {repeat + 1})" if args.repeats > 1 else ""
        add({"variant": f"encode_document, 1 process, cuda, to NumPy{suffix}",
             **single_process(path, passages, "cuda", None, True)})
        add({"variant": f"encode_document, 1 process, cuda, tensors on GPU{suffix}",
             **single_process(path, passages, "cuda", None)})
        bc.free_memory()
        for variant in args.gpu_variants.split(","):
            batch, cpus, dtype, *more = variant.split(":")
            actors = int(more[0]) if more else 1
            add({"variant": f"encode_with_ray, {actors} actor(s) on 1 GPU, batch {batch}, {cpus} CPU(s) each, "
                            f"{dtype}{suffix}",
                 **run_ray(args, None, actors=actors, ray_batch=int(batch), actor_cpus=int(cpus), vector_dtype=dtype)})
    return rows


def print_ray(rows: list[dict[str, Any]]) -> None:
    base = rows[0]["passages_per_s"]
    print(f"{'variant':<84} {'passages/s':>11} {'x first':>8} {'steady/s':>10} {'x first':>8} {'wall s':>8}")
    for row in rows:
        steady = row.get("steady_passages_per_s")
        wall = row.get("total_s", row.get("encode_s"))
        print(f"{row['variant']:<84} {row['passages_per_s']:>11.1f} {row['passages_per_s'] / base:>8.2f} "
              f"{'' if steady is None else f'{steady:.1f}':>10} {'' if steady is None else f'{steady / base:.2f}':>8} "
              f"{wall:>8.1f}")


# ----------------------------------------------------------------------------- engines ------------


def engines(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    from bench_index import _vocabulary, iter_corpus, latencies, make_queries, summary

    from xm_integrations import PackedTokens, maxsim
    from xm_integrations.index import LanceDBIndex, QdrantIndex

    documents = [d for _, chunk in iter_corpus("clustered", args.size, args.seed) for d in chunk]
    ids = [str(i) for i in range(len(documents))]
    queries, _ = make_queries("clustered", args.queries, args.size, args.seed, _vocabulary(args.seed))
    stored = [torch.from_numpy(d.astype(np.float16).astype(np.float32)) for d in documents]
    packed = PackedTokens(torch.cat(stored), torch.tensor(np.concatenate([[0], np.cumsum([len(d) for d in stored])])))
    query_tensors = [torch.from_numpy(q) for q in queries]

    def exhaustive(query: torch.Tensor) -> list[str]:
        scores = maxsim([query], packed)[0]
        return [ids[i] for i in torch.topk(scores, 10).indices.tolist()]

    rows, truth = [], None
    times, truth = latencies(exhaustive, query_tensors)
    rows.append({"variant": "exhaustive xm maxsim", **summary(times), "recall@10": 1.0})
    work = bc.work_dir(args) / f"engines-{args.size}"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    lance = LanceDBIndex(work / "lancedb")
    t0 = time.perf_counter()
    for start in range(0, len(documents), 2000):
        lance.add(ids[start:start + 2000], documents[start:start + 2000])
    lance.optimize()
    rows.append(_index_row("LanceDBIndex (IVF-PQ + exact re-scoring)", lance, query_tensors, truth,
                           time.perf_counter() - t0))
    qdrant = QdrantIndex(location=":memory:")
    t0 = time.perf_counter()
    for start in range(0, len(documents), 2000):
        qdrant.add(ids[start:start + 2000], documents[start:start + 2000])
    build_s = time.perf_counter() - t0
    client = QdrantIndex(client=qdrant.client, rescore="client")
    slow, slow_truth = query_tensors[:args.slow_queries], truth[:args.slow_queries]
    for candidates in (int(c) for c in args.candidates.split(",")):
        rows.append(_index_row(f"QdrantIndex local, MaxSim in engine, candidates {candidates}", qdrant, slow, slow_truth,
                               build_s, candidates))
        rows.append(_index_row(f"QdrantIndex local, MaxSim here, candidates {candidates}", client, slow, slow_truth,
                               None, candidates))
        build_s = None
    return rows


def _index_row(name: str, index: Any, queries: list, truth: list[list[str]], build_s: float | None,
               candidates: int | None = None) -> dict[str, Any]:
    from bench_index import latencies, summary

    times, found = latencies(lambda q: [h["corpus_id"] for h in index.search(query_embeddings=[q], top_k=10,
                                                                              candidates=candidates)[0]], queries)
    hits = [len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]
    return {"variant": name, **summary(times), "recall@10": float(np.mean(hits)), "build_s": build_s,
            "queries": len(queries)}


def print_engines(rows: list[dict[str, Any]]) -> None:
    base = rows[0]["p50_ms"]
    print(f"{'variant':<58} {'p50 ms':>8} {'p99 ms':>8} {'x exh.':>7} {'recall@10':>9} {'build s':>8} {'queries':>7}")
    for row in rows:
        build = row.get("build_s")
        print(f"{row['variant']:<58} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {base / row['p50_ms']:>7.2f} "
              f"{row['recall@10']:>9.3f} {'' if build is None else f'{build:.1f}':>8} {row.get('queries', ''):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=("ray-cpu", "ray-gpu", "engines", "ray-driver"))
    parser.add_argument("--passages", type=int, default=3000)
    parser.add_argument("--spec", default=None, choices=sorted(bc.SPECS), help="model size (default: tiny on CPU, base on GPU)")
    parser.add_argument("--ray-batch", type=int, default=8192, help="passages per Ray batch")
    parser.add_argument("--actors", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gpus", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (ray-gpu, ray-driver)")
    parser.add_argument("--actor-cpus", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--vector-dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--gpu-variants", default="2048:8:float16,8192:8:float16",
                        help="ray-gpu: Ray variants as BATCH:CPUS:DTYPE[:ACTORS] (actors sharing the GPU, default 1), "
                             "comma-separated")
    parser.add_argument("--size", type=int, default=10000, help="engines: documents")
    parser.add_argument("--queries", type=int, default=50, help="engines: queries for exhaustive and LanceDB")
    parser.add_argument("--slow-queries", type=int, default=20, help="engines: queries for Qdrant local mode")
    parser.add_argument("--candidates", default="100,1000", help="engines: Qdrant first-stage candidates to compare")
    parser.add_argument("--repeats", type=int, default=1, help="ray-gpu: rounds of every variant, interleaved")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.spec = args.spec or ("base" if args.workload == "ray-gpu" else "tiny")
    if args.workload == "ray-driver":
        return ray_driver(args)
    if args.workload == "ray-gpu":
        args.gpus = 1
    run = {"ray-cpu": ray_cpu, "ray-gpu": ray_gpu, "engines": engines}[args.workload]
    rows = run(args)
    print(f"# {args.workload}: {bc.environment('cuda' if args.gpus else 'cpu')}")
    (print_engines if args.workload == "engines" else print_ray)(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"workload": args.workload, "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
