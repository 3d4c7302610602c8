# Probe behind benchmarks/NOTES.md (2026-12-02): run from the repository root on the GPU machine, not part of the package.
"""Diagnostics: GPU busy fraction and host wait for tokenization, default vs compile(), 1L vs 5L."""
import os, sys, time, json
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, "scripts")
import numpy as np, torch
import bench_common as bc
import bench_encode as be
from xm_integrations.engine import pipeline as fi
from xm_integrations.models.mono_xm import MonoXM
from xm_integrations.models.colbert_xm.model import ColBERTXM

OUT = os.environ.get("OUT", "/tmp")
which = sys.argv[1]
spec = bc.SPECS[os.environ.get("SPEC", "base")]
dev = os.environ.get("DEV", "cuda")
# host-side accounting of the pipeline: time the launching thread waits for the tokenizer thread
stats = {"wait": 0.0, "compute": 0.0, "prepare": 0.0}
def run_pipelined(chunks, prepare, compute, *, background=True):
    def p(c):
        t = time.perf_counter(); r = prepare(c); stats["prepare"] += time.perf_counter() - t; return r
    def c(x):
        t = time.perf_counter(); r = compute(x); stats["compute"] += time.perf_counter() - t; return r
    from concurrent.futures import ThreadPoolExecutor
    results = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(p, chunks[0])
        for i in range(len(chunks)):
            t = time.perf_counter(); prepared = pending.result(); stats["wait"] += time.perf_counter() - t
            if i + 1 < len(chunks):
                pending = pool.submit(p, chunks[i + 1])
            results.append(c(prepared))
    return results
fi.run_pipelined = run_pipelined

def busy(fn):
    from torch.profiler import profile, ProfilerActivity
    if dev == "cpu":
        return 0.0, 0.0
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); wall = time.perf_counter() - t
    iv = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type.name == "CUDA")
    total, cur_s, cur_e = 0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            if cur_e is not None: total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None: total += cur_e - cur_s
    return wall, total / 1e6

def report(tag, fn):
    fn()  # warm, full size
    bc.sync(dev)
    for k in stats: stats[k] = 0.0
    t = time.perf_counter(); fn(); bc.sync(dev); wall = time.perf_counter() - t
    s = dict(stats)
    pw, gpu = busy(fn)
    from torch._dynamo.utils import counters
    row = {"tag": tag, "wall_s": round(wall, 3), "wait_tok_s": round(s["wait"], 3), "launch_s": round(s["compute"], 3),
           "prepare_s": round(s["prepare"], 3), "prof_wall_s": round(pw, 3), "gpu_busy_s": round(gpu, 3),
           "busy_frac": round(gpu / pw, 3) if pw else None, "recompiles": dict(counters["recompiles"]) if "recompiles" in counters else {},
           "frames": dict(counters["frames"])}
    print(json.dumps(row), flush=True)
    with open(f"{OUT}/busy_{which}.jsonl", "a") as f: f.write(json.dumps(row) + "\n")

work = bc.work_dir(type("A", (), {"work_dir": None})())
NQ = int(os.environ.get("NQ", "100"))
if which == "mono":
    path = bc.build_mono_xm_checkpoint(work / f"mono_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec)
    wls = [bc.make_pair_workload(f"{NQ}x100 {t}", NQ, 100, l, seed=101) for l, t in ((("en_XX",), "1L"), (bc.FIVE_LANGUAGES, "5L"))]
    model = MonoXM(str(path), device=dev)
    for compiled in (False, True):
        if compiled: model.compile()
        for wl in wls:
            report(f"mono {'compile' if compiled else 'default'} {wl.name}", lambda: model.predict(wl.pairs, language=wl.languages, show_progress_bar=False))
else:
    path = bc.build_colbert_xm_checkpoint(work / f"colbert_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec, doc_maxlen=256)
    n = int(os.environ.get("NDOCS", "50000"))
    wls = []
    for langs, t in ((("en_XX",), "1L"), (bc.FIVE_LANGUAGES, "5L")):
        texts, codes, _ = be.make_texts(n, langs, seed=7); wls.append((t, texts, codes))
    model = ColBERTXM(str(path), device=dev)
    for compiled in (False, True):
        if compiled: model.compile()
        for t, texts, codes in wls:
            report(f"colbert {'compile' if compiled else 'default'} {t} {n}", lambda: model.encode_document(texts, language=codes, show_progress_bar=False))
