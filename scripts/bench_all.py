"""Run every benchmark in ``scripts/`` and print one table.

A script takes part when it is named ``bench_*.py`` and defines ``run_benchmark`` (the protocol of
``scripts/bench_common.py``: it accepts ``--json PATH``, ``--small``, ``--device``, ``--work-dir``
and writes ``{"meta": ..., "rows": [...]}``). Each runs in its own process, so peak-memory figures
do not leak from one into the next. Other ``bench_*.py`` files are listed as skipped.

    python scripts/bench_all.py --out docs/benchmarks            # on the H200
    python scripts/bench_all.py --small --out /tmp/bench          # on a CPU machine, a few minutes
    python scripts/bench_all.py --plot-only docs/benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_common as bc  # noqa: E402

#: Run first, in this order; any other participating script follows alphabetically.
ORDER = ("bench_rerank.py", "bench_encode.py", "bench_maxsim_gpu.py")
NOT_BENCHMARKS = {"bench_common.py", "bench_all.py"}


def discover() -> tuple[list[Path], list[str]]:
    scripts, skipped = [], []
    candidates = sorted(HERE.glob("bench_*.py"), key=lambda p: (ORDER.index(p.name) if p.name in ORDER else 99, p.name))
    for path in candidates:
        if path.name in NOT_BENCHMARKS:
            continue
        if "def run_benchmark(" in path.read_text(encoding="utf-8"):
            scripts.append(path)
        else:
            skipped.append(path.name)
    return scripts, skipped


def plot(rows: list[dict], path: Path, title: str) -> bool:
    """Bar chart: throughput of each variant relative to the best stock variant, per workload."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib not installed; no plot", flush=True)
        return False
    benches = [b for b in dict.fromkeys(r["bench"] for r in rows) if any(r.get("speedup") for r in rows if r["bench"] == b)]
    if not benches:
        return False
    fig, axes = plt.subplots(len(benches), 1, figsize=(11, 3.2 + 0.28 * max(
        len({r["variant"] for r in rows if r["bench"] == b}) for b in benches) * len(benches)), squeeze=False)
    for ax, bench in zip(axes[:, 0], benches):
        sel = [r for r in rows if r["bench"] == bench and r.get("speedup")]
        workloads = list(dict.fromkeys(r["workload"] for r in sel))
        variants = list(dict.fromkeys(r["variant"] for r in sel))
        height = 0.8 / max(1, len(workloads))
        for w_index, workload in enumerate(workloads):
            values = [next((r["speedup"] for r in sel if r["variant"] == v and r["workload"] == workload), 0.0)
                      for v in variants]
            positions = [i + w_index * height for i in range(len(variants))]
            ax.barh(positions, values, height=height, label=workload)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(variants))], variants, fontsize=7)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axvline(2.0 if bench != "maxsim" else 3.0, color="r", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("throughput / best stock (log; dashed: target)")
        ax.set_title(f"{bench}", fontsize=9)
        ax.invert_yaxis()
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"# plot written to {path}", flush=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="folder for results.json, per-bench JSON and the plot")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--only", default=None, help="comma-separated script names (e.g. bench_rerank.py)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds for all of it (shared out)")
    parser.add_argument("--plot-only", default=None, help="re-plot a results.json and exit")
    args, passthrough = parser.parse_known_args()

    if args.plot_only:
        payload = json.loads(Path(args.plot_only).read_text())
        plot(payload["rows"], Path(args.plot_only).with_name("benchmarks.png"), payload.get("title", ""))
        print(bc.format_table(payload["rows"]))
        return

    out = Path(args.out) if args.out else Path("/tmp/xm_bench_results")
    out.mkdir(parents=True, exist_ok=True)
    scripts, skipped = discover()
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        scripts = [s for s in scripts if s.name in names or s.stem in names]
    start = time.monotonic()
    rows: list[dict] = []
    meta: dict = {"skipped": skipped, "scripts": {}}
    for index, script in enumerate(scripts):
        cmd = [sys.executable, str(script), "--json", str(out / f"{script.stem}.json")]
        if args.small:
            cmd.append("--small")
        if args.device:
            cmd += ["--device", args.device]
        if args.work_dir:
            cmd += ["--work-dir", args.work_dir]
        if args.time_budget and "--time-budget" in script.read_text(encoding="utf-8"):
            left = args.time_budget - (time.monotonic() - start)
            if left < 20:
                print(f"# no time left for {script.name}", flush=True)
                meta["scripts"][script.name] = {"status": "no time left"}
                continue
            cmd += ["--time-budget", str(round(left / (len(scripts) - index)))]
        cmd += passthrough
        print(f"# running {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, check=False)
        status = {"returncode": proc.returncode, "seconds": round(time.monotonic() - t0, 1)}
        result = out / f"{script.stem}.json"
        if result.exists():
            payload = json.loads(result.read_text())
            rows += payload.get("rows", [])
            status["meta"] = payload.get("meta", {})
        meta["scripts"][script.name] = status
    bc.add_speedups(rows)
    environment = next((s["meta"].get("environment") for s in meta["scripts"].values() if s.get("meta")), None)
    title = ""
    if environment:
        title = (f"{environment.get('gpu') or environment.get('cpu') or 'CPU'}, torch {environment.get('torch')}, "
                 f"transformers {environment.get('transformers')}, sentence-transformers "
                 f"{environment.get('sentence_transformers')}, {environment.get('date')}")
    bc.write_json(out / "results.json", {"title": title, "meta": meta, "rows": rows})
    plot(rows, out / "benchmarks.png", title)
    print()
    print(title)
    if skipped:
        print(f"(not part of this table, no run_benchmark(): {', '.join(skipped)})")
    print(bc.format_table(rows))


if __name__ == "__main__":
    main()
