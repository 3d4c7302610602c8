"""MaxSim on the GPU: stock sentence-transformers and a padded einsum against xm_integrations.maxsim and a fused Triton kernel.

1 and 64 queries of 32 tokens against 1,000, 100,000 and 1,000,000 documents of up to 256 tokens
(log-normal lengths around 120, clipped to [16, 256]), 128 dimensions, bf16 unit vectors, stored
padded to 256 with the real vectors first (what a ColBERT index holds). The CPU benchmark of
``xm_integrations.maxsim`` is ``benchmarks/bench_maxsim.py``; this one is its GPU counterpart.

Figures: documents per second; achieved bandwidth = bytes of the real document vectors (the least
any method must read) per second, as a fraction of a device-to-device copy measured on the same card;
for 64 queries, useful TFLOP/s as a fraction of the measured bf16 matrix rate. Accuracy against a
float64 reference on the first 1,000 documents (max relative error, identical top-10 per query).
Slow variants are timed on a prefix of the documents (noted), so the table reports their rate.

    python benchmarks/bench_maxsim_gpu.py            # needs CUDA (and Triton for the fused kernel)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

BENCH = "maxsim"
DIM, QUERY_TOKENS, MAX_TOKENS = 128, 32, 256
ACCURACY_DOCS = 1000


def make_documents(n: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(n, 256, 128)`` bf16 unit vectors (zeros after each document's length) and the lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(math.log(120), 0.45, size=n)), 16, MAX_TOKENS).astype(np.int32)
    lengths_t = torch.from_numpy(lengths).to(device)
    docs = torch.empty((n, MAX_TOKENS, DIM), dtype=torch.bfloat16, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    positions = torch.arange(MAX_TOKENS, device=device)
    step = 20_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        chunk = torch.randn((stop - start, MAX_TOKENS, DIM), device=device, generator=gen)
        chunk = torch.nn.functional.normalize(chunk, dim=-1)
        chunk *= (positions[None, :] < lengths_t[start:stop, None])[..., None]
        docs[start:stop] = chunk.to(torch.bfloat16)
    return docs, lengths_t


def einsum_maxsim(queries: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor, budget_bytes: int = 4 << 30):
    """The plain way: one einsum over padded tensors, padding masked to -inf, chunked over documents."""
    n_q = queries.shape[0]
    chunk = max(1, budget_bytes // (n_q * QUERY_TOKENS * MAX_TOKENS * docs.element_size()))
    out = []
    for start in range(0, docs.shape[0], chunk):
        sim = torch.einsum("qld,ntd->qnlt", queries, docs[start:start + chunk])
        sim = sim.masked_fill(~mask[None, start:start + chunk, None, :], float("-inf"))
        out.append(sim.amax(dim=-1).float().sum(dim=-1))
    return torch.cat(out, dim=1)


def reference_scores(queries: torch.Tensor, docs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    q = queries.double()
    out = torch.empty((queries.shape[0], docs.shape[0]), dtype=torch.float64, device=docs.device)
    for j in range(docs.shape[0]):
        d = docs[j, : int(lengths[j])].double()
        out[:, j] = torch.einsum("qld,td->qlt", q, d).amax(dim=-1).sum(dim=-1)
    return out


def accuracy(scores: torch.Tensor, ref: torch.Tensor) -> dict:
    s, r = scores.double().cpu().numpy(), ref.cpu().numpy()
    rel = float(np.max(np.abs(s - r) / np.abs(r)))
    same = [np.array_equal(np.argsort(-s[i], kind="stable")[:10], np.argsort(-r[i], kind="stable")[:10])
            for i in range(s.shape[0])]
    return {"max_rel_err": rel, "err_over_std": float(np.max(np.abs(s - r)) / r.std()), "top10_same": float(np.mean(same))}


def run_benchmark(args: argparse.Namespace) -> list[dict]:
    device = bc.resolve_device(args)
    if not device.startswith("cuda"):
        print("# bench_maxsim_gpu needs CUDA; the CPU benchmark is benchmarks/bench_maxsim.py", flush=True)
        return []
    ceilings = bc.measure_ceilings(device)
    rec = bc.Recorder(args, BENCH, device, {"ceilings": ceilings})
    print("# ceilings", ceilings, flush=True)
    sizes = [int(x) for x in (args.sizes or "1000,100000,1000000").split(",")]
    query_counts = [int(x) for x in (args.queries or "1,64").split(",")]
    deadline = time.monotonic() + args.time_budget if args.time_budget else None

    from sentence_transformers.util import similarity as st_similarity

    from xm_integrations.scoring.triton_kernel import maxsim_triton
    try:
        from xm_integrations.scoring.late_interaction import maxsim as xm_maxsim
    except Exception as exc:  # noqa: BLE001 - being written in parallel
        print(f"# xm_integrations.maxsim not importable: {exc!r}", flush=True)
        xm_maxsim = None

    t0 = time.perf_counter()
    docs_all, lengths_all = make_documents(max(sizes), device)
    print(f"# documents generated in {time.perf_counter() - t0:.1f} s", flush=True)
    mask_all = torch.arange(MAX_TOKENS, device=device)[None, :] < lengths_all[:, None]
    gen = torch.Generator(device=device).manual_seed(1)
    queries_all = torch.nn.functional.normalize(
        torch.randn((max(query_counts), QUERY_TOKENS, DIM), device=device, generator=gen), dim=-1).to(torch.bfloat16)

    variants: list[tuple[str, Callable, bool]] = [
        ("stock util.similarity.maxsim", lambda q, d, m, ln: st_similarity.maxsim(q, d, b_mask=m), True),
        ("stock einsum (padded)", lambda q, d, m, ln: einsum_maxsim(q, d, m), True),
    ]
    if xm_maxsim is not None:
        variants.append(("xm maxsim", lambda q, d, m, ln: xm_maxsim(q, d, document_mask=m), False))
    triton_configs = [dict(block_t=64, docs_per_program=4), dict(block_t=32, docs_per_program=8),
                      dict(block_t=64, docs_per_program=16, num_stages=4)]
    for config in triton_configs:
        name = "triton fused " + ",".join(f"{k.split('_')[0]}={v}" for k, v in config.items())
        variants.append((name, lambda q, d, m, ln, c=config: maxsim_triton(q, d, ln, **c), False))

    for n_q in query_counts:
        queries = queries_all[:n_q]
        ref = reference_scores(queries, docs_all[:ACCURACY_DOCS], lengths_all[:ACCURACY_DOCS])
        for name, fn, slow in variants:
            if not bc.wanted(args, name):
                continue
            per_doc = None
            for n in sizes:
                if deadline is not None and time.monotonic() > deadline:
                    print(f"# time budget exhausted; skipping {name}", flush=True)
                    break
                note, n_run = None, n
                if per_doc is not None and per_doc * n > args.slow_limit:
                    n_run = max(ACCURACY_DOCS, int(args.slow_limit / per_doc))
                    note = f"timed on {n_run:,} of {n:,} documents"
                docs, mask, lengths = docs_all[:n_run], mask_all[:n_run], lengths_all[:n_run]
                try:
                    scores = fn(queries, docs_all[:ACCURACY_DOCS], mask_all[:ACCURACY_DOCS], lengths_all[:ACCURACY_DOCS])
                    acc = accuracy(scores, ref)
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    seconds = bc.cuda_event_time(lambda: fn(queries, docs, mask, lengths), warmup=1,
                                                 repeats=3 if n_run * n_q < 10**7 else 2)
                except Exception as exc:  # noqa: BLE001 - a failing variant is a row, not a crash
                    print(f"# {name} failed at {n:,}: {exc!r}", flush=True)
                    rec.add(workload=f"{n_q}q x {n:,} docs", variant=name, note=f"failed: {exc!r}"[:200])
                    break
                real_bytes = float(lengths.sum()) * DIM * docs.element_size()
                flops = 2.0 * n_q * QUERY_TOKENS * float(lengths.sum()) * DIM
                rec.add(workload=f"{n_q}q x {n:,} docs", variant=name, n=n_run, seconds=seconds,
                        items_per_s=n_run / seconds, ms_per_1k=1e6 * seconds / n_run,
                        bandwidth_frac=real_bytes / seconds / ceilings["copy_bytes_per_s"],
                        gb_per_s=real_bytes / seconds / 1e9,
                        mfu=flops / seconds / ceilings["matmul_bf16_flops"],
                        peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30, note=note, **acc)
                per_doc = seconds / n_run
                bc.free_memory()
    return rec.rows


def build_parser() -> argparse.ArgumentParser:
    parser = bc.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="document counts, comma-separated")
    parser.add_argument("--queries", default=None, help="query counts, comma-separated")
    parser.add_argument("--slow-limit", type=float, default=3.0,
                        help="seconds one timed call may take before a slow variant is timed on a prefix")
    parser.add_argument("--time-budget", type=float, default=None)
    return parser


if __name__ == "__main__":
    bc.main(run_benchmark, build_parser())
