"""ColBERT-XM document encoding throughput: stock MultiVectorEncoder against ColBERTXM and its fast paths.

Workload: 100,000 passages of realistic mixed lengths (50-300 tokens; ColBERT-XM keeps 256),
in one language and in five languages mixed (a language per passage). ``--small``: a few dozen.

Variants (rows):

* ``stock MultiVectorEncoder fp32``: ``MultiVectorEncoder(path).encode_document(texts)`` with defaults
  (it loads the colbert-ai ``HF_ColBERT`` layout itself); for five languages one call per language
  after ``set_default_language``, as a stock user must.
* ``ColBERTXM (default)``: ``ColBERTXM(path).encode_document(texts, language=...)`` as users get it
  (the fast path: on CUDA fp16 autocast over the float32 weights, as colbert-ai encodes on a GPU);
  ``ColBERTXM fast_inference=False``: stock batching; ``ColBERTXM <dtype> weights``: the model cast
  to that dtype, default arguments (the fast path then runs in it, without autocast);
  ``ColBERTXM unordered chunks of 8192``: the fast path as it was before inputs were ordered by
  characters (chunks in input order, doubling up to 8,192 texts), for comparison in the same run.
* ``ColBERTXM tokenizing between launches`` (GPU only, not yet run): without the background
  tokenizer thread, each chunk tokenized by the launching thread while the GPU runs the chunk
  before; likewise after ``compile()``.
* ``ColBERTXM compile()``: the same after ``model.compile()`` (every XMOD layer through
  ``torch.compile``; the first call, which compiles, is untimed and printed);
  ``ColBERTXM compile(cpp_wrapper)`` (GPU variants only): ``compile(options={"cpp_wrapper": True})``.
* ``ColBERTXM bf16 +fast adapters``: the same in bf16 with
  :func:`xm_integrations.engine.pipeline.install_fast_adapters`.
* ``fast <dtype> <budget>``: :func:`xm_integrations.engine.pipeline.encode_texts` with
  :class:`~xm_integrations.engine.pipeline.ColBERTDocumentHead` (token-budget batches, language
  grouping, background tokenization, no per-document synchronisation).
* ``tokenize only``: colbert-ai's document tokenization of the same texts, nothing else (a bound).

Accuracy, on the first 2,000 passages of each workload, against float32 (``fast fp32``, the same
arithmetic as stock float32): max abs error of the unit vectors, and MaxSim scores of 16 random
32-token queries against those passages (max relative error, identical top-10 per query).

    python benchmarks/bench_encode.py            # H200
    python benchmarks/bench_encode.py --small    # CPU
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

from xm_integrations.engine import pipeline as fi  # noqa: E402

from xm_integrations.models.colbert_xm import head as colbert_head  # noqa: E402

from xm_integrations.xmod import adapters  # noqa: E402
from xm_integrations.xmod.language_api import find_xmod_model  # noqa: E402

BENCH = "encode"
ACCURACY_DOCS = 2000
EncodeFn = Callable[[list, list], list]


def make_texts(count: int, languages, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = np.array(bc.words(), dtype=object)
    lengths = bc.passage_lengths(count, rng)
    ids = rng.integers(0, len(vocab), size=int(lengths.sum()))
    texts, start = [], 0
    for length in lengths:
        texts.append(" ".join(vocab[ids[start:start + length]]))
        start += length
    langs = [str(x) for x in rng.choice(list(languages), size=count)]
    return texts, langs, lengths


def maxsim_scores(queries: torch.Tensor, documents: list[torch.Tensor]) -> np.ndarray:
    """float64 MaxSim of ``queries`` (n, 32, dim) against each document's vectors, on the CPU."""
    q = queries.double()
    return np.array([[float((qi @ d.double().T).max(dim=1).values.sum()) for d in documents] for qi in q]).T


def encode_accuracy(vectors: list, reference: list, queries: torch.Tensor) -> dict:
    n = min(len(reference), len(vectors))
    got = [v.detach().float().cpu() for v in vectors[:n]]
    ref = reference[:n]
    if any(g.shape != r.shape for g, r in zip(got, ref)):
        return {"max_rel_err": float("nan"), "top10_same": 0.0,
                "note": "other tokens than colbert-ai's (stock inserts the markers as text): not comparable"}
    vec_err = max(float((g.double() - r.double()).abs().max()) for g, r in zip(got, ref))
    scores, ref_scores = maxsim_scores(queries, got), maxsim_scores(queries, ref)
    rel = float(np.max(np.abs(scores - ref_scores) / np.abs(ref_scores)))
    same = [np.array_equal(np.argsort(-scores[:, j], kind="stable")[:10], np.argsort(-ref_scores[:, j], kind="stable")[:10])
            for j in range(scores.shape[1])]
    spread = float(np.std(ref_scores))
    return {"max_rel_err": rel, "err_over_std": float(np.max(np.abs(scores - ref_scores)) / spread),
            "vector_max_abs_err": vec_err, "top10_same": float(np.mean(same))}


def run_benchmark(args: argparse.Namespace) -> list[dict]:
    device = bc.resolve_device(args)
    cuda = device.startswith("cuda")
    spec = bc.resolve_spec(args)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t0 = time.perf_counter()
    path = bc.build_colbert_xm_checkpoint(bc.work_dir(args) / f"colbert_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}",
                                          spec, doc_maxlen=256)
    build_s = time.perf_counter() - t0
    ceilings = bc.measure_ceilings(device, small=args.small)
    count = args.passages or (48 if args.small else 100_000)
    workloads = []
    for langs, tag in ((("en_XX",), "1 lang"), (bc.FIVE_LANGUAGES, "5 langs")):
        if args.one_language and tag != "1 lang":
            continue
        texts, codes, _ = make_texts(count, langs, seed=7)
        workloads.append((f"{count:,} passages, {tag}", texts, codes))
    rec = bc.Recorder(args, BENCH, device, {"model": spec.name, "ceilings": ceilings, "checkpoint_build_s": build_s})
    print("# ceilings", ceilings, "build", round(build_s, 1), "s", flush=True)
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    n_acc = min(ACCURACY_DOCS, count)
    slow_n = min(count, args.slow_passages or (24 if args.small else 3000))
    gen = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(16, 32, 128, generator=gen), dim=-1)

    from xm_integrations.models.colbert_xm.model import ColBERTXM

    model = ColBERTXM(str(path), device=device)
    xmod = find_xmod_model(model)
    languages = list(xmod.config.languages)
    state = {k: v.detach().clone().cpu() for k, v in xmod.state_dict().items()}
    dense = next(m.linear for m in model if type(m).__name__ == "Dense")  # colbert-ai's linear (dim x hidden)
    dense_state = dense.weight.detach().clone()
    encoding = model.colbert_encoding
    skip_ids = model._multi_vector_mask()._skiplist_ids
    skiplist = sorted({int(i) for i in ([] if skip_ids is None else skip_ids.tolist())} | {encoding.pad_token_id})
    tokenizer = model.tokenizer
    references: dict[str, list] = {}
    token_counts: dict[str, np.ndarray] = {}

    def tokenize_fn(texts):
        return colbert_head.colbert_document_ids(tokenizer, texts, doc_maxlen=encoding.doc_maxlen, marker_id=encoding.doc_marker_id)

    for name, texts, _ in workloads:
        token_counts[name] = np.array([len(x) for x in tokenize_fn(texts)])

    def measure(variant: str, encode: EncodeFn, *, reference: bool = False, repeats: int | None = None,
                subset: int | None = None, warm_full: bool = False) -> None:
        """Time ``encode`` on every workload and record a row each; ``warm_full``: the untimed first
        call is the whole workload rather than 64 passages (a compiled model then meets no new batch
        layout in the timed calls), its seconds kept in the row (``first_call_s``)."""
        if not (reference or bc.wanted(args, variant)):
            return
        for name, texts, codes in workloads:
            if deadline is not None and time.monotonic() > deadline and not reference:
                print(f"# time budget exhausted; skipping {variant} on {name}", flush=True)
                continue
            n, note = len(texts), None
            if reference:
                n, note = n_acc, f"timed on {n_acc:,} passages (the accuracy subset)"
            if subset is not None and subset < n:
                n, note = subset, f"timed on {subset:,} of {len(texts):,} passages"
            warm_n = min(64, n)
            first_call_s = None
            if warm_full:
                first_call_s = bc.timed_once(lambda: encode(texts[:n], codes[:n]), device)
            else:
                encode(texts[:warm_n], codes[:warm_n])
            timing = bc.time_call(lambda: encode(texts[:n], codes[:n]), device, repeats=repeats or args.repeats,
                                  max_seconds=args.max_seconds or (5.0 if args.small else 8.0), warmup=lambda: None)
            vectors = timing.result
            if reference:
                references[name] = [v.detach().float().cpu() for v in vectors[:n_acc]]
            acc = encode_accuracy(vectors, references[name], queries) if name in references and len(vectors) else {}
            tokens = float(token_counts[name][:n].sum())
            flops = bc.xmod_forward_flops(spec, token_counts[name][:n], head="colbert", colbert_dim=128)
            out_device = str(vectors[0].device) if len(vectors) and hasattr(vectors[0], "device") else None
            rec.add(workload=name, variant=variant, n=n, seconds=timing.seconds, runs=timing.runs,
                    items_per_s=n / timing.seconds, ms_per_1k=1e6 * timing.seconds / n,
                    tokens_per_s=tokens / timing.seconds,
                    mfu=(flops / timing.seconds / ceilings["matmul_bf16_flops"]) if len(vectors) else None,
                    peak_mem_gib=timing.peak_mem_gib, first_call_s=first_call_s, out_device=out_device,
                    note=acc.pop("note", note), **acc)

    def fast(**kwargs) -> EncodeFn:
        def encode(texts, codes):
            head = colbert_head.ColBERTDocumentHead(dense.weight, skiplist)
            ids = np.array([languages.index(c) for c in codes], dtype=np.int64)
            return fi.encode_texts(xmod, tokenizer, texts, ids, head=head, split=head.split,
                                   tokenize_fn=tokenize_fn, **kwargs)
        return encode

    def colbertxm(batch_size: int | None = None) -> EncodeFn:
        def encode(texts, codes):
            kw = {} if batch_size is None else {"batch_size": batch_size}
            return model.encode_document(texts, language=codes, show_progress_bar=False, **kw)
        return encode

    adapters.install_fast_adapters(xmod)
    measure("fast fp32 (reference)", fast(), reference=True)

    def tok_only(texts, codes):
        tokenize_fn(texts)
        return []

    measure("tokenize only (colbert-ai document tokenization)", tok_only)

    # stock MultiVectorEncoder
    from sentence_transformers import MultiVectorEncoder

    def per_language_encoder(stock: MultiVectorEncoder, batch_size: int | None = None) -> EncodeFn:
        """Stock encode_document, one call per language (stock cannot route a language per input)."""
        xmod = find_xmod_model(stock)
        kw = {} if batch_size is None else {"batch_size": batch_size}

        def encode(texts, codes):
            out: list = [None] * len(texts)
            codes_arr = np.asarray(codes)
            for code in dict.fromkeys(codes):
                idx = np.nonzero(codes_arr == code)[0]
                xmod.set_default_language(code)
                for i, v in zip(idx, stock.encode_document([texts[i] for i in idx], show_progress_bar=False, **kw)):
                    out[i] = v
            return out

        return encode

    stock = MultiVectorEncoder(str(path), device=device)
    stock_encode = per_language_encoder(stock)
    measure("stock MultiVectorEncoder fp32", stock_encode, subset=slow_n)
    del stock, stock_encode
    bc.free_memory()
    if cuda:
        # The best stock configuration on a GPU: half-precision weights and a large batch.
        stock16 = MultiVectorEncoder(str(path), device=device, model_kwargs={"dtype": torch.float16})
        stock16_encode = per_language_encoder(stock16, batch_size=256)
        measure("stock MultiVectorEncoder fp16 batch 256", stock16_encode, subset=slow_n)
        del stock16, stock16_encode
        bc.free_memory()

    # What users get: the fast path (token budget; fp16 autocast on CUDA, float32 on CPU).
    gpu_variants = cuda or args.all_variants
    measure("ColBERTXM (default)", colbertxm())
    if gpu_variants and bc.wanted(args, "ColBERTXM tokenizing between launches"):
        with bc.tokenizing_between_launches(model):
            measure("ColBERTXM tokenizing between launches", colbertxm())
    if bc.wanted(args, "ColBERTXM unordered chunks of 8192"):
        with bc.chunking(model, 8192, ordered=False):
            measure("ColBERTXM unordered chunks of 8192", colbertxm())
    _, first_texts, first_codes = workloads[0]
    for variant in bc.compiled_variants(
            args, model, lambda: model.encode_document(first_texts[:64], language=first_codes[:64],
                                                       show_progress_bar=False),
            device, "ColBERTXM", gpu_variants=gpu_variants):
        measure(variant, colbertxm(), warm_full=True)
        if gpu_variants and bc.wanted(args, f"{variant} tokenizing between launches"):
            with bc.tokenizing_between_launches(model):
                measure(f"{variant} tokenizing between launches", colbertxm(), warm_full=True)
    model.fast_inference = False
    measure("ColBERTXM fast_inference=False", colbertxm(), subset=slow_n)
    model.fast_inference = True
    dtypes = [torch.bfloat16, torch.float16] if gpu_variants else [torch.float32]
    if gpu_variants:
        adapters.install_fast_adapters(xmod)
        measure("fast autocast-float16 32k", fast(autocast_dtype=torch.float16, max_tokens=32768))
    for dtype in dtypes:
        label = str(dtype)[6:]
        model.to(torch.float32)
        xmod.load_state_dict(state, strict=False)
        dense.weight.data.copy_(dense_state)
        model.to(dtype)
        adapters.install_fast_adapters(xmod)
        if dtype != torch.float32:
            measure(f"ColBERTXM {label} weights", colbertxm())
        if dtype == torch.bfloat16:
            measure(f"ColBERTXM {label} +fast adapters", colbertxm(), subset=slow_n)
            measure(f"ColBERTXM {label} +fast adapters bs256", colbertxm(256), subset=slow_n)
        budgets = (32768, 65536) if (gpu_variants and dtype == torch.bfloat16) else (32768 if gpu_variants else 4096,)
        for budget in budgets:
            measure(f"fast {label} {budget // 1024}k", fast(max_tokens=budget))
        measure(f"fast {label} {budgets[0] // 1024}k ungrouped", fast(max_tokens=budgets[0], group_languages=False))
        measure(f"fast {label} {budgets[0] // 1024}k greedy", fast(max_tokens=budgets[0], balance=False))
        measure(f"fast {label} {budgets[0] // 1024}k chunk2k", fast(max_tokens=budgets[0], chunk_size=2048))
    return rec.rows


def build_parser() -> argparse.ArgumentParser:
    parser = bc.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--passages", type=int, default=None)
    parser.add_argument("--slow-passages", type=int, default=None,
                        help="passages the slow (stock, as-is) variants are timed on (default 3,000)")
    parser.add_argument("--time-budget", type=float, default=None)
    parser.add_argument("--one-language", action="store_true")
    parser.add_argument("--all-variants", action="store_true", help="the GPU variant list on CPU too (testing)")
    return parser


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    return args


if __name__ == "__main__":
    bc.main(lambda a: run_benchmark(_defaults(a)), build_parser())
