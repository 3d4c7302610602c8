#!/usr/bin/env python
"""Benchmark ``xm_integrations.maxsim.maxsim`` against ``sentence_transformers.util.similarity.maxsim``.

One query (``--query-tokens`` x ``--dim``, default 32 x 128) against ``--n-docs`` random documents of
``--doc-tokens`` tokens (default 1,000,000 x 32), on ``--device`` in ``--dtype``. Each variant is
timed (best of ``--repeats`` runs, since other processes share the machine), its peak memory
increase is measured, and its scores are checked against the other implementation and against a
float64 NumPy brute force on a sample of documents. Prints a markdown table (ratio ours/stock).

Variants (input forms):

* ``ours/packed``   -- :class:`PackedTokens` (flat token matrix + offsets; the document-store form;
  uniform lengths make it a zero-copy ``(n, tokens, dim)`` view).
* ``ours/list``     -- a list of ``n`` ``(tokens, dim)`` tensors (what an encoder returns).
* ``stock/padded``  -- the same ``(n, tokens, dim)`` tensor, no masks (stock's fastest form).
* ``stock/list``    -- the same list.

Peak memory. CPU: peak RSS increase over the RSS right before the call, read from
``/proc/self/status`` (VmHWM - VmRSS) after resetting the high-water mark through
``/proc/self/clear_refs`` and returning freed heap to the OS (``malloc_trim``), so that all
variants share one copy of the corpus (16 GiB in fp32 at 1M docs; generating it is the slow part
of this script, ~40 s here). Where clear_refs is not writable, or with ``--isolate``, each variant
runs in a fresh subprocess instead and the increase of ``ru_maxrss`` is reported. CUDA:
``torch.cuda.max_memory_allocated`` over the memory allocated before the call.

Data: the first 2^20 token rows are random Gaussian vectors, every later row ``r`` copies row
``hash(r)`` of those, so the corpus is cheap to build, deterministic, and identical in its first
documents whatever ``--n-docs`` is (so ``--stock-n-docs`` runs compare on a common prefix).
``--min-doc-tokens`` makes document lengths ragged (hashed, uniform over [min, --doc-tokens]).

    .venv/bin/python benchmarks/bench_maxsim.py                      # 1M docs, fp32, CPU
    .venv/bin/python benchmarks/bench_maxsim.py --n-docs 200000 --dtype bfloat16
    .venv/bin/python benchmarks/bench_maxsim.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("ours/packed", "ours/list", "stock/padded", "stock/list")
POOL_ROWS = 1 << 20


def _load_ours():
    """Import xm_integrations/scoring/late_interaction.py by path: the package __init__ is not needed (nor timed)."""
    spec = importlib.util.spec_from_file_location("xm_maxsim", ROOT / "xm_integrations" / "scoring" / "late_interaction.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["xm_maxsim"] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- data ---------------


def _hash_rows(rows: torch.Tensor) -> torch.Tensor:
    """32-bit integer hash (two xorshift-multiply rounds), then the pool row."""
    x = rows & 0xFFFFFFFF
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (x >> 16) ^ x
    return x & (POOL_ROWS - 1)


def doc_offsets(n_docs: int, doc_tokens: int, min_doc_tokens: int | None) -> torch.Tensor:
    """``(n_docs + 1,)`` offsets: every document ``doc_tokens`` long, or (``min_doc_tokens`` given)
    a hashed length in ``[min_doc_tokens, doc_tokens]``, the same for document ``j`` whatever n."""
    if min_doc_tokens is None:
        return torch.arange(n_docs + 1, dtype=torch.int64) * doc_tokens
    lengths = min_doc_tokens + _hash_rows(torch.arange(n_docs) + 7919) % (doc_tokens - min_doc_tokens + 1)
    offsets = torch.zeros(n_docs + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return offsets


def make_corpus(total: int, dim: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """``(total, dim)`` token matrix in ``dtype``. Rows below ``POOL_ROWS`` are Gaussian (8k-row
    blocks, each with its own seed); every later row copies pool row ``hash(row)``. Row ``r`` is the
    same whatever ``total`` is, and no temporary above a few MiB is made (so the ``ru_maxrss`` of
    ``--isolate`` is not set by the data build)."""
    out = _empty_cpu_hugepages(total, dim, dtype) if device == "cpu" else None
    if out is None:
        out = torch.empty(total, dim, dtype=dtype, device=device)
    block = 1 << 13
    for b in range(0, min(POOL_ROWS, total), block):
        g = torch.Generator().manual_seed(seed * 1_000_003 + b)
        rows = min(block, total - b)
        out[b : b + rows] = torch.randn(block, dim, generator=g)[:rows].to(device=device, dtype=dtype)
    pool = out[:POOL_ROWS]
    step = 1 << 18
    for start in range(POOL_ROWS, total, step):
        rows = torch.arange(start, min(total, start + step), device=device)
        torch.index_select(pool, 0, _hash_rows(rows), out=out[start : start + rows.numel()])
    return out


def _empty_cpu_hugepages(rows: int, dim: int, dtype: torch.dtype) -> torch.Tensor | None:
    """An uninitialised CPU tensor backed by an anonymous mapping advised for transparent huge pages:
    first-touching 16 GiB of 4 KiB pages is the slowest part of this script on a VM (~7 s per 4 GiB
    here; ~5 s with huge pages). None where mmap/madvise is unavailable."""
    import mmap

    nbytes = rows * dim * torch.finfo(dtype).bits // 8
    try:
        buf = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError, ValueError):
        return None
    return torch.frombuffer(buf, dtype=dtype, count=rows * dim).view(rows, dim)


def make_query(query_tokens: int, dim: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(query_tokens, dim, generator=g).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------- memory -------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMeter:
    """Peak memory increase of the code between ``start()`` and ``stop()`` (MiB)."""

    def __init__(self, device: str, mode: str) -> None:
        self.device, self.mode = device, mode  # mode: "clear_refs" | "ru_maxrss"

    def start(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        elif self.mode == "clear_refs":
            _trim_heap()
            self.base = _status_kib("VmRSS") * 1024
            _can_reset_peak()
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def stop(self) -> float:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.mode == "clear_refs":
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, peak - self.base) / 2**20


# ----------------------------------------------------------------------------- one variant --------


def run_variant(variant: str, corpus: torch.Tensor, query: torch.Tensor, n_docs: int, args, mode: str) -> dict:
    """Time ``variant`` on the first ``n_docs`` documents; return timings, peak memory and scores."""
    ours = _load_ours()
    from sentence_transformers.util.similarity import maxsim as stock_maxsim

    dim, tokens = corpus.shape[1], args.doc_tokens
    offsets = doc_offsets(n_docs, tokens, args.min_doc_tokens)
    flat = corpus[: int(offsets[-1])]
    uniform = args.min_doc_tokens is None
    kwargs = {} if args.memory_budget is None else {"memory_budget": args.memory_budget}

    def as_list() -> list[torch.Tensor]:  # views: no copy
        if uniform:
            return list(flat.view(n_docs, tokens, dim).unbind(0))
        bounds = offsets.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(n_docs)]

    if variant == "ours/packed":
        docs = ours.PackedTokens(flat, offsets)
        call = lambda: ours.maxsim([query], docs, **kwargs)  # noqa: E731
    elif variant == "ours/list":
        docs = as_list()
        call = lambda: ours.maxsim([query], docs, **kwargs)  # noqa: E731
    elif variant == "stock/padded":
        if uniform:
            docs = flat.view(n_docs, tokens, dim)
            call = lambda: stock_maxsim(query.unsqueeze(0), docs)  # noqa: E731
        else:  # padded + mask, built before timing (stock would guess padding from zero rows otherwise)
            docs, mask = ours.pad_token_embeddings(as_list())
            call = lambda: stock_maxsim(query.unsqueeze(0), docs, b_mask=mask)  # noqa: E731
    elif variant == "stock/list":
        docs = as_list()
        call = lambda: stock_maxsim([query], docs)  # noqa: E731
    else:
        raise ValueError(variant)
    repeats = args.repeats if variant.startswith("ours") else args.stock_repeats
    meter = PeakMeter(args.device, mode)
    times, cpu_times, peak = [], [], 0.0
    scores = None
    for _ in range(repeats):
        scores = None
        meter.start()
        c0, t0 = time.process_time(), time.perf_counter()
        scores = call()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        peak = max(peak, meter.stop())
    return {
        "variant": variant,
        "n_docs": n_docs,
        "times": times,
        "cpu_times": cpu_times,
        "peak_mib": peak,
        "scores": scores.reshape(-1).float().cpu().numpy(),
    }


def _reference(corpus: torch.Tensor, query: torch.Tensor, offsets: torch.Tensor, sample: int) -> np.ndarray:
    """float64 NumPy brute force on the first ``sample`` documents (same rounded inputs)."""
    d = corpus[: int(offsets[sample])].double().cpu().numpy()
    q = query.double().cpu().numpy()
    bounds = offsets.tolist()
    return np.array([(q @ d[bounds[i] : bounds[i + 1]].T).max(axis=1).sum() for i in range(sample)])


# ----------------------------------------------------------------------------- driver -------------


def _worker(args) -> None:
    """Subprocess mode: build the data, run one variant, write JSON + scores."""
    dtype = getattr(torch, args.dtype)
    total = int(doc_offsets(args.worker_n_docs, args.doc_tokens, args.min_doc_tokens)[-1])
    corpus = make_corpus(total, args.dim, dtype, args.device, args.seed)
    query = make_query(args.query_tokens, args.dim, dtype, args.device, args.seed)
    result = run_variant(args.worker, corpus, query, args.worker_n_docs, args, "ru_maxrss")
    np.save(args.worker_out + ".npy", result.pop("scores"))
    Path(args.worker_out + ".json").write_text(json.dumps(result))


def _run_isolated(variant: str, n_docs: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        cmd = [sys.executable, __file__, "--worker", variant, "--worker-n-docs", str(n_docs), "--worker-out", out]
        for key in ("doc_tokens", "query_tokens", "dim", "device", "dtype", "seed", "repeats", "stock_repeats"):
            cmd += ["--" + key.replace("_", "-"), str(getattr(args, key))]
        if args.memory_budget is not None:
            cmd += ["--memory-budget", str(args.memory_budget)]
        if args.min_doc_tokens is not None:
            cmd += ["--min-doc-tokens", str(args.min_doc_tokens)]
        subprocess.run(cmd, check=True)
        result = json.loads(Path(out + ".json").read_text())
        result["scores"] = np.load(out + ".npy")
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-docs", type=int, default=1_000_000)
    p.add_argument("--stock-n-docs", type=int, default=None, help="documents for stock (default: --n-docs)")
    p.add_argument("--doc-tokens", type=int, default=32, help="tokens per document (the maximum with --min-doc-tokens)")
    p.add_argument("--min-doc-tokens", type=int, default=None,
                   help="ragged corpus: document lengths spread over [min, --doc-tokens]")
    p.add_argument("--query-tokens", type=int, default=32)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--repeats", type=int, default=2, help="timed runs of ours (best is reported)")
    p.add_argument("--stock-repeats", type=int, default=1, help="timed runs of stock (best is reported)")
    p.add_argument("--memory-budget", type=int, default=None, help="ours: bytes per chunk (default: module default)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--reference-sample", type=int, default=2000, help="documents checked against float64 NumPy")
    p.add_argument("--isolate", action="store_true", help="one fresh subprocess per variant (rebuilds the data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-n-docs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    dtype = getattr(torch, args.dtype)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    try:
        from sentence_transformers.util.similarity import maxsim as _  # noqa: F401
    except ImportError as exc:
        print(f"# stock maxsim unavailable ({exc}); running ours only", flush=True)
        variants = [v for v in variants if not v.startswith("stock")]
    stock_n = args.stock_n_docs or args.n_docs
    largest = max(args.n_docs, stock_n)
    offsets = doc_offsets(largest, args.doc_tokens, args.min_doc_tokens)
    total_tokens = int(offsets[-1])
    corpus_bytes = total_tokens * args.dim * torch.finfo(dtype).bits // 8
    if args.min_doc_tokens is not None and "stock/padded" in variants:
        corpus_bytes_needed = corpus_bytes + stock_n * args.doc_tokens * args.dim * torch.finfo(dtype).bits // 8
    else:
        corpus_bytes_needed = corpus_bytes
    if args.device.startswith("cuda"):
        avail = torch.cuda.mem_get_info(torch.device(args.device))[0]
        if args.min_doc_tokens is not None and "stock/padded" in variants:
            corpus_bytes_needed += stock_n * int(offsets[-1]) // largest * args.dim * torch.finfo(dtype).bits // 8
        if corpus_bytes_needed + 2 * 2**30 > avail:
            p.error(
                f"the corpus needs {corpus_bytes_needed / 2**30:.1f} GiB (+ ~2 GiB working memory) but only "
                f"{avail / 2**30:.1f} GiB of GPU memory is free: lower --n-docs or --stock-n-docs"
            )
    if args.device == "cpu":
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
        if corpus_bytes_needed + 2 * 2**30 > avail:
            p.error(
                f"the corpus needs {corpus_bytes_needed / 2**30:.1f} GiB (+ ~2 GiB working memory) but only "
                f"{avail / 2**30:.1f} GiB is available: lower --n-docs or use --dtype bfloat16/float16"
            )
    if args.device != "cpu":
        mode = "cuda"
    else:
        mode = "clear_refs" if (not args.isolate and _can_reset_peak()) else "isolate"
    torch.set_grad_enabled(False)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {args.device}, dtype {args.dtype}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    t0 = time.perf_counter()
    corpus = make_corpus(total_tokens, args.dim, dtype, args.device, args.seed)
    query = make_query(args.query_tokens, args.dim, dtype, args.device, args.seed)
    shape = (f"{args.doc_tokens}" if args.min_doc_tokens is None
             else f"{args.min_doc_tokens}-{args.doc_tokens} (mean {total_tokens / largest:.1f})")
    print(f"# corpus: {largest:,} docs x {shape} tokens x {args.dim} ({corpus_bytes / 2**30:.1f} GiB), "
          f"built in {time.perf_counter() - t0:.1f} s; peak memory via {mode}", flush=True)
    sample = min(args.reference_sample, args.n_docs, stock_n)
    reference = _reference(corpus, query, offsets, sample)

    results = {}
    for variant in variants:
        n = stock_n if variant.startswith("stock") else args.n_docs
        if mode == "isolate":
            del corpus
            _trim_heap()
            results[variant] = _run_isolated(variant, n, args)
            corpus = make_corpus(int(offsets[sample]), args.dim, dtype, args.device, args.seed)
        else:
            results[variant] = run_variant(variant, corpus, query, n, args, mode)
        r = results[variant]
        print(f"# {variant}: best {min(r['times']):.3f} s of {['%.3f' % t for t in r['times']]}, "
              f"peak +{r['peak_mib']:.0f} MiB, load average now {os.getloadavg()[0]:.1f}", flush=True)

    # ---- agreement
    lines = []
    for variant, r in results.items():
        err = np.abs(r["scores"][:sample] - reference)
        lines.append(f"- {variant} vs float64 NumPy (first {sample:,} docs): max |diff| {err.max():.2e} "
                     f"(max rel {(err / np.maximum(np.abs(reference), 1e-12)).max():.2e})")
    ours_keys = [k for k in results if k.startswith("ours")]
    stock_keys = [k for k in results if k.startswith("stock")]
    for ok in ours_keys:
        for sk in stock_keys:
            n = min(results[ok]["n_docs"], results[sk]["n_docs"])
            a, b = results[ok]["scores"][:n], results[sk]["scores"][:n]
            rel = np.abs(a - b).max() / np.abs(b).max()
            k = min(100, n)
            top = len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k]))
            lines.append(f"- {ok} vs {sk} ({n:,} docs): max |diff| {np.abs(a - b).max():.2e} "
                         f"({rel:.1e} of max score), top-{k} overlap {top}/{k}")

    # ---- table
    pairs = {"ours/packed": "stock/padded", "ours/list": "stock/list"}
    header = ("| variant | docs | best wall time (s) | docs/s | CPU time (s) | peak mem increase (MiB) "
              "| time ours/stock | memory ours/stock |")
    rows = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, r in results.items():
        best = min(r["times"])
        ratio_t = ratio_m = ""
        partner = results.get(pairs.get(variant, ""))
        if partner is not None:
            # per-document time, so a stock run at a smaller N still compares
            ratio_t = f"{(best / r['n_docs']) / (min(partner['times']) / partner['n_docs']):.2f}"
            if partner["n_docs"] == r["n_docs"] and partner["peak_mib"] > 0:
                ratio_m = f"{r['peak_mib'] / partner['peak_mib']:.3f}"
        cpu = r["cpu_times"][r["times"].index(best)]
        rows.append(f"| {variant} | {r['n_docs']:,} | {best:.3f} | {r['n_docs'] / best:,.0f} | {cpu:.2f} | "
                    f"{r['peak_mib']:.0f} | {ratio_t} | {ratio_m} |")
    print()
    print("\n".join(rows))
    print()
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
