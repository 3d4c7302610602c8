"""Multi-device pools: MonoXM and XMFlagReranker on one device against a pool over every device, and how fast failures surface.

Workload: ``--pairs`` (query, passage) pairs of mixed lengths (passages 50-300 tokens) in five
languages mixed, one language per pair, on the xmod-base-size random model of ``bench_common``.

Rows:

* ``MonoXM 1 device`` / ``MonoXM pool xN``: ``predict(pairs, language=langs)`` on ``cuda:0``, then
  through ``start_multi_process_pool`` over N devices with the default ``chunk_size`` (two chunks
  per worker; started and warmed before timing: a pool is started once and reused). The note gives the scaling against one device and the largest score
  difference between the two (each worker runs the same fast path on its own device).
* ``XMFlagReranker 1 device`` / ``XMFlagReranker xN``: ``compute_score(pairs, language=langs)`` with
  ``devices=["cuda:0"]`` and with every device (its pool starts on first use; a warm call first).
* ``bad language, pool``: a call with one unknown language in a running pool; seconds until the
  error reaches the caller (languages are resolved before dispatch: it must not wait on workers).
* ``worker killed, pool``: one worker process killed, then a call; seconds until the error.

With fewer than two devices the pool rows are skipped, unless ``--devices`` names the pool's
devices: ``--devices cuda:0`` (a pool of one worker) against ``MonoXM 1 device`` is the pool's
own cost, measurable on one GPU. On CPU (``--small``) the "devices" are two
CPU processes, which checks the code path, not the scaling.

    python benchmarks/bench_pools.py                  # every visible GPU
    python benchmarks/bench_pools.py --small          # CPU, two processes, tiny model
    python benchmarks/bench_pools.py --trace          # also: when each worker's chunks start and end
    python benchmarks/bench_pools.py --devices cuda:0 # a pool of one worker against the same device directly
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # spawned workers tokenize in parallel too

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

from xm_integrations.models.mono_xm import MonoXM  # noqa: E402

BENCH = "pools"
#: One clock for the parent and its spawned workers (they inherit the environment), for --trace.
TRACE_T0 = float(os.environ.setdefault("XM_BENCH_TRACE_T0", str(time.time())))


class TracedMonoXM(MonoXM):
    """``MonoXM`` whose fast-path calls print when they start and end in a pool worker (``--trace``).

    Pools scale 1.2x on two H200s while two independent processes scale 1.95x: this shows where a
    pooled call's time goes, chunk by chunk. Both worker entry points (``predict`` up to
    sentence-transformers 6.1, ``_inference`` from 6.2) end in ``_predict_fast``. Defined at module
    level so that spawned workers unpickle it.
    """

    def _predict_fast(self, pairs, **kwargs):
        start = time.time()
        scores = super()._predict_fast(pairs, **kwargs)
        if os.environ.get("XM_BENCH_TRACE_PARENT") != str(os.getpid()):
            print(f"# trace worker {os.getpid()} on {kwargs.get('device')}: {len(pairs)} pairs "
                  f"{start - TRACE_T0:8.3f} -> {time.time() - TRACE_T0:8.3f} s", file=sys.stderr, flush=True)
        return scores


def _devices(args: argparse.Namespace, device: str) -> list[str]:
    if args.devices:
        return args.devices.split(",")
    if device.startswith("cuda"):
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu", "cpu"]


def _seconds_until_error(call: Callable[[], Any]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the error is what is measured
        return time.perf_counter() - start, f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    return time.perf_counter() - start, "no error raised"


def run_benchmark(args: argparse.Namespace) -> list[dict]:
    device = bc.resolve_device(args)
    spec = bc.resolve_spec(args)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker

    devices = _devices(args, device)
    path = bc.build_mono_xm_checkpoint(bc.work_dir(args) / f"mono_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec)
    n_pairs = args.pairs or (64 if args.small else 20_000)
    workload = bc.make_pair_workload(f"{n_pairs:,} pairs, 5 langs", 1, n_pairs, bc.FIVE_LANGUAGES, seed=7)
    pairs, langs = workload.pairs, workload.languages
    rec = bc.Recorder(args, BENCH, device, {"model": spec.name, "devices": devices})
    first = devices[0]

    def row(variant: str, seconds: float, note: str = "", **extra: Any) -> None:
        rec.add(workload=workload.name, variant=variant, n=n_pairs, seconds=seconds, items_per_s=n_pairs / seconds,
                ms_per_1k=1e6 * seconds / n_pairs, note=note, **extra)

    # --- MonoXM -----------------------------------------------------------------------------------
    if args.trace:
        os.environ["XM_BENCH_TRACE_PARENT"] = str(os.getpid())
    mono = (TracedMonoXM if args.trace else MonoXM)(str(path), device=first)
    single = bc.time_call(lambda: mono.predict(pairs, language=langs, show_progress_bar=False), first,
                          repeats=args.repeats)
    row("MonoXM 1 device", single.seconds, peak_mem_gib=single.peak_mem_gib)
    if args.devices or len(devices) > 1 or not device.startswith("cuda"):
        pool = mono.start_multi_process_pool(devices)
        try:

            def pooled() -> np.ndarray:
                start = time.time()
                scores = mono.predict(pairs, language=langs, pool=pool, show_progress_bar=False)
                if args.trace:
                    print(f"# trace pooled call: {start - TRACE_T0:8.3f} -> {time.time() - TRACE_T0:8.3f} s",
                          file=sys.stderr, flush=True)
                return scores

            timing = bc.time_call(pooled, first, repeats=args.repeats)
            diff = float(np.abs(np.asarray(timing.result) - np.asarray(single.result)).max())
            row(f"MonoXM pool x{len(devices)}", timing.seconds,
                f"{single.seconds / timing.seconds:.2f}x one device; max abs score diff {diff:.1e}")
            seconds, error = _seconds_until_error(
                lambda: mono.predict(pairs, language=langs[:-1] + ["xx-unknown"], pool=pool))
            row("bad language, pool", seconds, error)
            pool["processes"][0].kill()
            seconds, error = _seconds_until_error(lambda: mono.predict(pairs, language=langs, pool=pool))
            row("worker killed, pool", seconds, error)
        finally:
            mono.stop_multi_process_pool(pool)
    del mono
    bc.free_memory()

    # --- XMFlagReranker ---------------------------------------------------------------------------
    one = XMFlagReranker(str(path), use_fp16=device.startswith("cuda"), devices=[first])
    flag_single = bc.time_call(lambda: one.compute_score(pairs, language=langs), first, repeats=args.repeats)
    row("XMFlagReranker 1 device", flag_single.seconds, peak_mem_gib=flag_single.peak_mem_gib)
    del one
    bc.free_memory()
    if args.devices or len(devices) > 1:
        many = XMFlagReranker(str(path), use_fp16=device.startswith("cuda"), devices=devices)
        try:
            timing = bc.time_call(lambda: many.compute_score(pairs, language=langs), first, repeats=args.repeats)
            diff = float(np.abs(np.asarray(timing.result) - np.asarray(flag_single.result)).max())
            row(f"XMFlagReranker x{len(devices)}", timing.seconds,
                f"{flag_single.seconds / timing.seconds:.2f}x one device; max abs score diff {diff:.1e}")
            seconds, error = _seconds_until_error(lambda: many.compute_score(pairs, language=["xx-unknown"] * n_pairs))
            row("bad language, XMFlagReranker xN", seconds, error)
        finally:
            many.stop_self_pool()
    return rec.rows


def build_parser() -> argparse.ArgumentParser:
    parser = bc.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="pairs per call (default 20,000; 64 with --small)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default=None,
                        help="comma-separated pool devices (default: every GPU); 'cuda:0' or 'cuda:0,cuda:0' "
                             "measures what the pool itself costs on a one-GPU machine")
    parser.add_argument("--trace", action="store_true",
                        help="print when each pool worker's chunk starts and ends (stderr), and each pooled call")
    return parser


if __name__ == "__main__":
    bc.main(run_benchmark, build_parser())
