# Probe behind benchmarks/NOTES.md (2026-12-02): run from the repository root on the GPU machine, not part of the package.
"""Experiment: tokenization/padding in a spawned process vs the background thread (GIL contention)."""
import os, sys, time, json
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, "scripts")
import numpy as np, torch
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

_TOK = None
def _init(path):
    global _TOK
    from transformers import AutoTokenizer
    _TOK = AutoTokenizer.from_pretrained(path)

def _prepare(kind, payload, langs, max_tokens, pad_id, doc_maxlen, marker_id):
    from xm_integrations.engine import config as engine_config
    from xm_integrations.engine import pipeline as fi
    from xm_integrations.engine import precision as precision_module
    from xm_integrations.engine import tokenization
    from xm_integrations.models.colbert_xm import head as colbert_head
    from xm_integrations.xmod import adapters
    if kind == "mono":
        seqs = tokenization.tokenize(_TOK, [q for q, _ in payload], [p for _, p in payload], max_length=512)
    else:
        seqs = colbert_head.colbert_document_ids(_TOK, payload, doc_maxlen=doc_maxlen, marker_id=marker_id)
    batches = fi.prepare_batches(seqs, langs, pad_id, max_tokens, None, True, False)
    return [(i, a.numpy(), m.numpy(), None if l is None else l.numpy(), p) for i, a, m, l, p in batches]

def main():
    import bench_common as bc, bench_encode as be
    from xm_integrations.engine import config as engine_config
    from xm_integrations.engine import pipeline as fi
    from xm_integrations.engine import precision as precision_module
    from xm_integrations.engine import tokenization
    from xm_integrations.models.colbert_xm import head as colbert_head
    from xm_integrations.xmod import adapters
    from xm_integrations.models.mono_xm import MonoXM
    from xm_integrations.models.colbert_xm.model import ColBERTXM
    OUT = os.environ.get("OUT", "/tmp")
    spec = bc.SPECS[os.environ.get("SPEC", "base")]
    dev = os.environ.get("DEV", "cuda")
    NQ = int(os.environ.get("NQ", "100")); NDOCS = int(os.environ.get("NDOCS", "50000"))
    work = bc.work_dir(type("A", (), {"work_dir": None})())
    ctx = mp.get_context("spawn")
    rows = []

    def run_proc(pool, kind, xmod, tok, items, langs, sizes, forward, doc_maxlen=0, marker_id=0):
        device = next(xmod.parameters()).device
        max_tokens = engine_config.DEFAULT_MAX_TOKENS_CUDA if device.type == "cuda" else engine_config.DEFAULT_MAX_TOKENS_CPU
        order = fi._input_order(sizes)
        chunks = [order[c.start:c.stop] for c in fi._chunks(len(items), fi.DEFAULT_CHUNK_SIZE)]
        def submit(chunk):
            return pool.submit(_prepare, kind, [items[i] for i in chunk], langs[chunk], max_tokens, tok.pad_token_id, doc_maxlen, marker_id)
        outs = []
        pending = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            batches = pending.result()
            if k + 1 < len(chunks):
                pending = submit(chunks[k + 1])
            for idx, ids, mask, bl, padded in batches:
                ids_t = torch.from_numpy(ids); mask_t = torch.from_numpy(mask)
                if device.type == "cuda":
                    ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                ids_t = ids_t.to(device, non_blocking=True); mask_t = mask_t.to(device, non_blocking=True)
                mm = fi.model_attention_mask(xmod, mask_t, padded)
                outs.append((chunk[idx], forward(ids_t, mask_t, mm, torch.from_numpy(bl))))
        return outs

    def timeit(tag, fn, reps=2):
        fn(); bc.sync(dev)
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); bc.sync(dev); ts.append(time.perf_counter() - t)
        row = {"tag": tag, "s": round(min(ts), 3), "runs": [round(x, 3) for x in ts]}
        print(json.dumps(row), flush=True); rows.append(row)

    # mono
    path = bc.build_mono_xm_checkpoint(work / f"mono_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec)
    mono = MonoXM(str(path), device=dev)
    xmod = mono._xmod_model(); adapters.install_fast_adapters(xmod); xmod.eval()
    languages = list(xmod.config.languages)
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_init, initargs=(str(path),))
    pool.submit(int, 0).result()
    ac = precision_module.default_autocast_dtype(dev)
    wls = [bc.make_pair_workload(f"{NQ}x100 {t}", NQ, 100, l, seed=101) for l, t in ((("en_XX",), "1L"), (bc.FIVE_LANGUAGES, "5L"))]
    def fwd_mono(ids, mask, mm, bl):
        return xmod(input_ids=ids, attention_mask=mm, lang_ids=bl).logits.float()
    for compiled in (False, True):
        if compiled: mono.compile()
        for wl in wls:
            langs = np.array([languages.index(c) for c in wl.languages])
            sizes = [len(q) + len(p) for q, p in wl.pairs]
            name = f"mono {'compile' if compiled else 'default'} {wl.name}"
            timeit(name + " thread", lambda: fi.score_pairs(xmod, mono.tokenizer, wl.pairs, langs, autocast_dtype=ac))
            def proc():
                with torch.inference_mode(), precision_module.precision(dev, ac, autocast=ac is not None):
                    return run_proc(pool, "mono", xmod, mono.tokenizer, wl.pairs, langs, sizes, fwd_mono)
            timeit(name + " process", proc)
            old = sys.getswitchinterval(); sys.setswitchinterval(0.0002)
            timeit(name + " thread si0.2ms", lambda: fi.score_pairs(xmod, mono.tokenizer, wl.pairs, langs, autocast_dtype=ac))
            sys.setswitchinterval(old)
    pool.shutdown()
    del mono, xmod; torch._dynamo.reset(); bc.free_memory()
    # colbert
    path = bc.build_colbert_xm_checkpoint(work / f"colbert_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec, doc_maxlen=256)
    model = ColBERTXM(str(path), device=dev)
    xmod = model._xmod_model(); adapters.install_fast_adapters(xmod); xmod.eval()
    languages = list(xmod.config.languages)
    enc = model.colbert_encoding
    weight, skip = model._fast_document_head_parts()
    head = colbert_head.ColBERTDocumentHead(weight, [] if skip is None else skip.to(weight.device))
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_init, initargs=(str(path),))
    pool.submit(int, 0).result()
    ac = precision_module.default_autocast_dtype(dev)
    def fwd_col(ids, mask, mm, bl):
        return head(xmod(input_ids=ids, attention_mask=mm, lang_ids=bl).last_hidden_state, ids, mask)
    tokfn = lambda texts: colbert_head.colbert_document_ids(model.tokenizer, texts, doc_maxlen=enc.doc_maxlen, marker_id=enc.doc_marker_id)
    for compiled in (False, True):
        if compiled: model.compile()
        for langs_set, t in ((("en_XX",), "1L"), (bc.FIVE_LANGUAGES, "5L")):
            texts, codes, _ = be.make_texts(NDOCS, langs_set, seed=7)
            langs = np.array([languages.index(c) for c in codes])
            name = f"colbert {'compile' if compiled else 'default'} {t} {NDOCS}"
            def thread():
                out = fi.encode_texts(xmod, model.tokenizer, texts, langs, head=head, split=head.split, tokenize_fn=tokfn, autocast_dtype=ac)
                return out
            timeit(name + " thread", thread)
            def proc():
                with torch.inference_mode(), precision_module.precision(dev, ac, autocast=ac is not None):
                    outs = run_proc(pool, "colbert", xmod, model.tokenizer, texts, langs, [len(x) for x in texts], fwd_col, enc.doc_maxlen, enc.doc_marker_id)
                    return [head.split(o) for _, o in outs]
            timeit(name + " process", proc)
            old = sys.getswitchinterval(); sys.setswitchinterval(0.0002)
            timeit(name + " thread si0.2ms", thread)
            sys.setswitchinterval(old)
    pool.shutdown()
    with open(f"{OUT}/proc.json", "w") as f: json.dump(rows, f, indent=1)

if __name__ == "__main__":
    main()
