"""Probe: is the first large ``encode_document`` of a process slower than the next, and why?

Round 1 of ``bench_distributed.py ray-gpu`` (to NumPy, the first large encode of its process) ran
at 0.55x of round 2 on the H200, while GPU-tensor and NumPy outputs agree once warm. Each variant
here runs in a fresh process: two encodes of the same passages back to back, with the CUDA
caching allocator's device allocations (``cudaMalloc`` calls) and pinned-host allocations counted
for each, and optionally a warm-up on a real slice of the workload first.

    python benchmarks/probes/gpu_cold_encode.py --passages 50000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_common as bc  # noqa: E402
from bench_distributed import workload  # noqa: E402


def one_process(args: argparse.Namespace) -> None:
    import torch

    from xm_integrations import ColBERTXM

    path = bc.build_colbert_xm_checkpoint(bc.work_dir(args) / "colbert-base", bc.SPECS["base"])
    model = ColBERTXM(str(path), device="cuda")
    passages = workload(args.passages)
    texts, languages = [p["text"] for p in passages], [p["language"] for p in passages]
    model.encode_document(texts[:64], language=languages[:64])
    rows = []

    def timed(name: str, count: int) -> None:
        before = torch.cuda.memory_stats()
        bc.sync("cuda")
        t0 = time.perf_counter()
        model.encode_document(texts[:count], language=languages[:count], convert_to_numpy=args.numpy)
        bc.sync("cuda")
        seconds = time.perf_counter() - t0
        after = torch.cuda.memory_stats()
        rows.append({"step": name, "passages": count, "seconds": seconds, "passages_per_s": count / seconds,
                     "cuda_mallocs": after.get("num_device_alloc", 0) - before.get("num_device_alloc", 0),
                     "reserved_gib": torch.cuda.memory_reserved() / 2**30})

    if args.warmup:
        timed("warm-up", args.warmup)
    timed("first", args.passages)
    timed("second", args.passages)
    print(json.dumps({"numpy": args.numpy, "warmup": args.warmup, "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=50000)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--numpy", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        one_process(args)
        return
    results = []
    for numpy, warmup in ((True, 0), (False, 0), (True, 8192)):
        argv = [sys.executable, __file__, "--child", "--passages", str(args.passages), "--warmup", str(warmup)]
        argv += ["--numpy"] * numpy + (["--work-dir", args.work_dir] if args.work_dir else [])
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        bc.write_json(args.json, {"environment": bc.environment("cuda"), "results": results})


if __name__ == "__main__":
    main()
