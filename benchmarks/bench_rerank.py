"""Mono-XM reranking throughput: stock CrossEncoder / FlagReranker against MonoXM and its fast paths.

Workloads (pairs of realistic mixed lengths, passages 50-300 tokens, queries 8-24 tokens):

* ``rank1k``: one query against 1,000 passages; ``pairs10k``: 100 queries x 100 passages;
* each in one language (``1lang``, en_XX) and in five languages mixed (``5lang``: a language per pair).

Variants (rows):

* ``stock CrossEncoder fp32``: ``CrossEncoder(path).predict(pairs)`` with defaults (the checkpoint's
  float32, sdpa, ``batch_size=32``). Stock cannot route a language per pair, so for ``5lang`` it is
  called once per language after ``set_default_language`` -- what a user of stock has to do.
* ``stock FlagReranker fp16``: ``FlagReranker(path, use_fp16=True).compute_score(pairs)``, likewise.
* ``MonoXM (default)``: ``MonoXM(path).predict(pairs, language=...)`` as users get it: the fast
  path (token budget; fp16 autocast on CUDA, float32 on CPU); ``MonoXM fast_inference=False``:
  stock batching with the fast adapters, on the same device.
* ``MonoXM tokenizing between launches`` (GPU only, not yet run): the fast path without its
  background tokenizer thread, each chunk tokenized by the launching thread while the GPU runs the
  chunk before; likewise after ``compile()``.
* ``MonoXM unordered chunks of 4096``: the fast path as it was before inputs were ordered by
  characters (chunks in input order, doubling up to 4,096 pairs), for comparison in the same run.
* ``MonoXM compile()``: the same after ``mono.compile()`` (every XMOD layer through
  ``torch.compile``; the first call, which compiles, is untimed and printed);
  ``MonoXM compile(cpp_wrapper)`` (GPU variants only): ``compile(options={"cpp_wrapper": True})``.
* ``MonoXM <dtype> weights``: the model cast to that dtype (as ``model_kwargs={"dtype": ...}`` loads
  it), default arguments: the fast path runs in that dtype, without autocast; ``MonoXM <dtype>
  weights compile()`` (and ``compile(cpp_wrapper)``): the same compiled.
* ``MonoXM bf16 stock batching``: ``fast_inference=False`` with bf16 weights (with and without
  :func:`xm_integrations.engine.pipeline.install_fast_adapters`).
* ``model only <dtype> <budget> (pre-tokenized)``: the forward passes alone, batches prepared
  untimed (``autocast-float16``: float32 weights under fp16 autocast, the default's arithmetic;
  ``compile()``, ``compile(cpp_wrapper)``: the same through the compiled layers).
* ``fast <dtype> <budget>``: :func:`xm_integrations.engine.pipeline.score_pairs` -- tokenized once,
  token-budget batches, language grouping, pinned async copies, background tokenization.
* ``FlagReranker fp16 +fast adapters``, ``XMFlagReranker fp16 (default)``: the FlagEmbedding side;
  ``XMFlagReranker fp16 tokenization only`` (FlagEmbedding's cut, decode and re-tokenize, a bound)
  and ``XMFlagReranker fp16 ids precomputed`` (the same call with that tokenization done untimed)
  split its time in two.

Accuracy: every row is compared with the float32 reference (``fast fp32``: float32 weights, the same
arithmetic as stock float32; the stock float32 row checks that) on the same inputs.

    python benchmarks/bench_rerank.py                 # H200: full scale
    python benchmarks/bench_rerank.py --small         # 2-core CPU, a few minutes
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

from xm_integrations.engine import config as engine_config  # noqa: E402

from xm_integrations.engine import pipeline as fi  # noqa: E402

from xm_integrations.engine import precision as precision_module  # noqa: E402

from xm_integrations.engine import tokenization  # noqa: E402

from xm_integrations.xmod import adapters  # noqa: E402
from xm_integrations.xmod.compiled_layers import compile_xmod_layers  # noqa: E402
from xm_integrations.xmod.language_api import find_xmod_model  # noqa: E402

BENCH = "rerank"
ScoreFn = Callable[[list, list], np.ndarray]


def _workloads(args: argparse.Namespace) -> list[bc.PairWorkload]:
    spec = args.shapes or ("1x48,4x24" if args.small else "1x1000,100x100")
    out = []
    for seed, shape in enumerate(spec.split(",")):
        n_queries, per_query = (int(x) for x in shape.lower().split("x"))
        name = f"{n_queries}q x {per_query}"
        langs_sets = ((("en_XX",), "1 lang"), (bc.FIVE_LANGUAGES, "5 langs"))
        if args.one_language:
            langs_sets = langs_sets[:1]
        for langs, tag in langs_sets:
            out.append(bc.make_pair_workload(f"{name}, {tag}", n_queries, per_query, langs, seed=100 + seed))
    return out


def _per_language(pairs: list, langs: list, set_language: Callable[[str], None],
                  score: Callable[[list], np.ndarray]) -> np.ndarray:
    """What a stock user does: one call per language, with the default language switched in between."""
    langs_arr = np.asarray(langs)
    out = np.empty(len(pairs), dtype=np.float64)
    for code in dict.fromkeys(langs):
        idx = np.nonzero(langs_arr == code)[0]
        set_language(code)
        out[idx] = score([pairs[i] for i in idx])
    return out


class Runner:
    def __init__(self, args: argparse.Namespace, device: str, spec: bc.ModelSpec, rec: bc.Recorder,
                 workloads: list[bc.PairWorkload], peak_flops: float) -> None:
        self.args, self.device, self.spec, self.rec = args, device, spec, rec
        self.workloads, self.peak_flops = workloads, peak_flops
        self.reference: dict[str, np.ndarray] = {}
        self.deadline = time.monotonic() + args.time_budget if args.time_budget else None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def measure(self, variant: str, score: ScoreFn, *, reference: bool = False, slow_limit: float | None = None,
                prepare: Callable[[list, list], object] | None = None, warm_full: bool = False) -> None:
        """Time ``score`` on every workload and record a row each.

        A variant whose smallest workload predicts more than ``slow_limit`` seconds on a larger one
        is timed there on a prefix of the queries (noted in the row); accuracy is then over that prefix.
        ``warm_full``: the untimed first call is the whole workload rather than 64 pairs, so that
        the timed calls meet no batch layout the first has not compiled; the row keeps its seconds
        (``first_call_s``).
        """
        if not bc.wanted(self.args, variant) and not reference:
            return
        slow_limit = self.args.slow_limit if slow_limit is None else slow_limit
        if reference:
            slow_limit = float("inf")  # every later row is compared with it, on every pair
        seconds_per_pair = None
        for wl in self.workloads:
            if self.out_of_time():
                print(f"# time budget exhausted; skipping {variant} on {wl.name}", flush=True)
                continue
            groups, note = wl.groups, None
            if seconds_per_pair is not None and seconds_per_pair * wl.n > slow_limit and len(groups) > 1:
                keep = max(1, int(len(groups) * slow_limit / (seconds_per_pair * wl.n)))
                groups = groups[:keep]
                note = f"timed on {keep} of {len(wl.groups)} queries"
            idx = np.concatenate(groups)
            pairs = [wl.pairs[i] for i in idx]
            langs = [wl.languages[i] for i in idx]
            warm = idx[: min(len(idx), 64)]
            max_seconds = self.args.max_seconds or (5.0 if self.args.small else 8.0)
            first_call_s = None
            if prepare is not None:  # untimed preparation; only score(state) is timed
                state = prepare(pairs, langs)
                timing = bc.time_call(lambda: score(state), self.device, repeats=self.args.repeats,
                                      max_seconds=max_seconds)
            else:
                if warm_full:
                    first_call_s = bc.timed_once(lambda: score(pairs, langs), self.device)
                timing = bc.time_call(
                    lambda: score(pairs, langs), self.device, repeats=self.args.repeats, max_seconds=max_seconds,
                    warmup=(lambda: None) if warm_full else (
                        lambda: score([wl.pairs[i] for i in warm], [wl.languages[i] for i in warm])),
                )
            if timing.result is None:  # a bound, not a scorer (tokenize only)
                self.rec.add(workload=wl.name, variant=variant, n=len(idx), seconds=timing.seconds, runs=timing.runs,
                             items_per_s=len(idx) / timing.seconds, ms_per_1k=1e6 * timing.seconds / len(idx),
                             tokens_per_s=float(wl.token_lengths[idx].sum()) / timing.seconds, note=note)
                continue
            logits = np.asarray(timing.result, dtype=np.float64).reshape(-1)
            if reference:
                ref = np.empty(wl.n)
                ref[idx] = logits
                self.reference[wl.name] = ref
            local_groups = []
            offset = 0
            for g in groups:
                local_groups.append(np.arange(offset, offset + len(g)))
                offset += len(g)
            acc = bc.score_accuracy(logits, self.reference[wl.name][idx], local_groups) if wl.name in self.reference else {}
            n = len(idx)
            flops = bc.xmod_forward_flops(self.spec, wl.token_lengths[idx])
            self.rec.add(
                workload=wl.name, variant=variant, n=n, seconds=timing.seconds, runs=timing.runs,
                items_per_s=n / timing.seconds, ms_per_1k=1e6 * timing.seconds / n,
                tokens_per_s=float(wl.token_lengths[idx].sum()) / timing.seconds,
                mfu=flops / timing.seconds / self.peak_flops, peak_mem_gib=timing.peak_mem_gib,
                first_call_s=first_call_s, note=note, **acc,
            )
            if seconds_per_pair is None:
                seconds_per_pair = timing.seconds / n


def _lang_index(languages: list[str], codes: list[str]) -> np.ndarray:
    position = {code: i for i, code in enumerate(languages)}
    return np.array([position[c] for c in codes], dtype=np.int64)


def _set_weights(model: torch.nn.Module, state: dict, dtype: torch.dtype) -> None:
    """Put the float32 weights back, then cast: every dtype variant starts from the same float32 numbers."""
    model.to(torch.float32)
    model.load_state_dict(state, strict=False)
    model.to(dtype)


def _remove_fast_adapters(model: torch.nn.Module) -> None:
    for module in model.modules():
        module.__dict__.pop("lang_adapter", None)


def run_benchmark(args: argparse.Namespace) -> list[dict]:
    device = bc.resolve_device(args)
    cuda = device.startswith("cuda")
    gpu_variants = cuda or args.all_variants
    spec = bc.resolve_spec(args)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    t0 = time.perf_counter()
    path = bc.build_mono_xm_checkpoint(bc.work_dir(args) / f"mono_xm_h{spec.hidden_size}_l{spec.num_hidden_layers}", spec)
    build_s = time.perf_counter() - t0
    ceilings = bc.measure_ceilings(device, small=args.small)
    workloads = _workloads(args)
    rec = bc.Recorder(args, BENCH, device, {"model": spec.name, "ceilings": ceilings, "checkpoint_build_s": build_s,
                                            "workloads": {w.name: {"pairs": w.n, "mean_tokens": float(w.token_lengths.mean())}
                                                          for w in workloads}})
    print("# ceilings", ceilings, "build", round(build_s, 1), "s", flush=True)
    runner = Runner(args, device, spec, rec, workloads, ceilings["matmul_bf16_flops"])
    fast_dtypes = [torch.bfloat16, torch.float16] if gpu_variants else [torch.float32]
    budgets = [16384, 32768, 65536] if gpu_variants else [engine_config.DEFAULT_MAX_TOKENS_CPU]
    from xm_integrations.models.mono_xm import MonoXM

    # --- MonoXM: float32 reference first, then the variants on the same instance -----------------
    mono = MonoXM(str(path), device=device)
    hf = find_xmod_model(mono)
    languages = list(hf.config.languages)
    state = {k: v.detach().clone().cpu() for k, v in hf.state_dict().items()}
    max_length = getattr(mono, "max_seq_length", None) or 512

    def fast(dtype_label: str, **kwargs) -> ScoreFn:
        def score(pairs, langs):
            logits = fi.score_pairs(hf, mono.tokenizer, pairs, _lang_index(languages, langs),
                                    max_length=max_length, **kwargs)
            return logits[:, 0].cpu().numpy()
        return score

    def mono_predict(batch_size: int | None = None) -> ScoreFn:
        def score(pairs, langs):
            kw = {} if batch_size is None else {"batch_size": batch_size}
            return bc.logit(mono.predict(pairs, language=langs, show_progress_bar=False, **kw))
        return score

    def tokenize_only(pairs, langs):
        tokenization.tokenize(mono.tokenizer, [p[0] for p in pairs], [p[1] for p in pairs], max_length=max_length)
        return None

    def model_prepare(max_tokens: int):
        def prepare(pairs, langs):
            sequences = tokenization.tokenize(mono.tokenizer, [p[0] for p in pairs], [p[1] for p in pairs], max_length=max_length)
            return fi.prepare_batches(sequences, _lang_index(languages, langs), mono.tokenizer.pad_token_id,
                                       max_tokens, None, True, cuda), len(pairs)
        return prepare

    @torch.inference_mode()
    def model_only(state):
        batches, count = state
        dev = torch.device(device)
        out = torch.empty(count, dtype=torch.float32, device=dev)
        for indices, input_ids, attention_mask, batch_langs, padded in batches:
            mask = fi.model_attention_mask(hf, attention_mask.to(dev, non_blocking=True), padded)
            logits = hf(input_ids=input_ids.to(dev, non_blocking=True), attention_mask=mask,
                        lang_ids=batch_langs).logits
            out[torch.from_numpy(indices).to(dev)] = logits[:, 0].float()
        return out.cpu().numpy()

    adapters.install_fast_adapters(hf)
    runner.measure("fast fp32 (reference)", fast("fp32"), reference=True)
    runner.measure("tokenize only", tokenize_only)
    _stock_and_flag(runner, path, device, cuda)
    def measure_compiled(prefix: str) -> None:
        """The ``<prefix> compile()`` rows (:func:`bench_common.compiled_variants`)."""
        first = workloads[0]
        for variant in bc.compiled_variants(
                args, mono, lambda: mono.predict(first.pairs[:64], language=first.languages[:64], show_progress_bar=False),
                device, prefix, gpu_variants=gpu_variants):
            runner.measure(variant, mono_predict(), warm_full=True)
            if gpu_variants and prefix == "MonoXM" and bc.wanted(args, f"{variant} tokenizing between launches"):
                with bc.tokenizing_between_launches(mono):
                    runner.measure(f"{variant} tokenizing between launches", mono_predict(), warm_full=True)

    # What users get: the fast path (fp16 autocast on CUDA, float32 on CPU).
    runner.measure("MonoXM (default)", mono_predict())
    if gpu_variants and bc.wanted(args, "MonoXM tokenizing between launches"):
        with bc.tokenizing_between_launches(mono):
            runner.measure("MonoXM tokenizing between launches", mono_predict())
    for ordered in (False, True):
        variant = f"MonoXM {'' if ordered else 'un'}ordered chunks of 4096"
        if bc.wanted(args, variant):
            with bc.chunking(mono, 4096, ordered=ordered):
                runner.measure(variant, mono_predict())
    measure_compiled("MonoXM")
    mono.fast_inference = False
    runner.measure("MonoXM fast_inference=False", mono_predict())
    mono.fast_inference = True
    if gpu_variants:
        for dtype in (torch.float16, torch.bfloat16):
            runner.measure(f"fast autocast-{str(dtype)[6:]} 32k", fast("ac", autocast_dtype=dtype, max_tokens=32768))

        def model_only_autocast(state):
            with precision_module.precision(device, torch.float16, autocast=True):
                return model_only(state)

        # What the default's own arithmetic allows: float32 weights under fp16 autocast, pre-tokenized.
        runner.measure("model only autocast-float16 32k (pre-tokenized)", model_only_autocast,
                       prepare=model_prepare(32768))
        for label, compile_kwargs in bc.COMPILE_VARIANTS.items():
            variant = f"model only autocast-float16 32k {label} (pre-tokenized)"
            if bc.wanted(args, variant):
                compile_xmod_layers(hf, **compile_kwargs)
                runner.measure(variant, model_only_autocast, prepare=model_prepare(32768))
                bc.remove_compiled_layers(hf)
    for dtype in fast_dtypes:
        label = str(dtype)[6:]
        _set_weights(hf, state, dtype)
        if dtype != torch.float32:
            runner.measure(f"MonoXM {label} weights", mono_predict())
            measure_compiled(f"MonoXM {label} weights")
        if dtype == torch.bfloat16:
            mono.fast_inference = False
            _remove_fast_adapters(hf)
            runner.measure(f"MonoXM {label} stock batching, transformers' adapters", mono_predict())
            adapters.install_fast_adapters(hf)
            runner.measure(f"MonoXM {label} stock batching", mono_predict())
            runner.measure(f"MonoXM {label} stock batching bs128", mono_predict(128))
            mono.fast_inference = True
        mid = budgets[len(budgets) // 2]
        for budget in budgets:
            runner.measure(f"fast {label} {budget // 1024}k", fast(label, max_tokens=budget))
        runner.measure(f"fast {label} {mid // 1024}k ungrouped", fast(label, max_tokens=mid, group_languages=False))
        runner.measure(f"fast {label} {mid // 1024}k chunk4k", fast(label, max_tokens=mid, chunk_size=4096))
        runner.measure(f"fast {label} {mid // 1024}k greedy", fast(label, max_tokens=mid, balance=False))
        runner.measure(f"model only {label} {mid // 1024}k (pre-tokenized)", model_only, prepare=model_prepare(mid))
    del mono, hf, state
    bc.free_memory()
    return rec.rows


def _stock_and_flag(runner: Runner, path, device: str, cuda: bool) -> None:
    """Stock CrossEncoder and FlagReranker (timed early, so a time budget never drops them), then XMFlagReranker."""
    if not any(bc.wanted(runner.args, v) for v in ("stock CrossEncoder fp32", "stock CrossEncoder fp16 batch 256",
                                                    "stock FlagReranker fp16",
                                                    "FlagReranker fp16 +fast adapters", "XMFlagReranker fp16 (default)",
                                                    "stock FlagReranker fp32")):
        return
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(path), device=device)
    ce_hf = find_xmod_model(ce)

    def ce_score(pairs, langs):
        return _per_language(pairs, langs, ce_hf.set_default_language,
                             lambda p: bc.logit(ce.predict(p, show_progress_bar=False)))

    runner.measure("stock CrossEncoder fp32", ce_score)
    del ce, ce_hf
    bc.free_memory()
    if cuda and bc.wanted(runner.args, "stock CrossEncoder fp16 batch 256"):
        # The best stock configuration on a GPU: half-precision weights and a large batch.
        ce16 = CrossEncoder(str(path), device=device, model_kwargs={"dtype": torch.float16})
        ce16_hf = find_xmod_model(ce16)

        def ce16_score(pairs, langs):
            return _per_language(pairs, langs, ce16_hf.set_default_language,
                                 lambda p: bc.logit(ce16.predict(p, batch_size=256, show_progress_bar=False)))

        runner.measure("stock CrossEncoder fp16 batch 256", ce16_score)
        del ce16, ce16_hf
        bc.free_memory()

    try:
        from FlagEmbedding import FlagReranker
    except Exception as exc:  # noqa: BLE001 - an optional dependency; report and go on
        print(f"# FlagEmbedding not importable ({exc!r}); skipping its rows", flush=True)
        return
    flag = FlagReranker(str(path), use_fp16=True, devices=["cuda:0"] if cuda else "cpu")

    def flag_score(pairs, langs):
        return _per_language(pairs, langs, flag.model.set_default_language,
                             lambda p: np.asarray(flag.compute_score(p), dtype=np.float64))

    label = "fp16" if cuda else "fp32"
    runner.measure(f"stock FlagReranker {label}", flag_score)
    adapters.install_fast_adapters(flag.model)
    runner.measure(f"FlagReranker {label} +fast adapters", flag_score)
    del flag
    bc.free_memory()
    try:
        from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker
    except Exception as exc:  # noqa: BLE001 - being written in parallel; report and go on
        print(f"# XMFlagReranker not importable ({exc!r}); skipping", flush=True)
        return
    xflag = XMFlagReranker(str(path), use_fp16=True, devices=["cuda:0"] if cuda else "cpu")
    runner.measure(f"XMFlagReranker {label} (default)",
                   lambda pairs, langs: np.asarray(xflag.compute_score(pairs, language=langs), dtype=np.float64))
    # Where XMFlagReranker's time goes: FlagEmbedding's tokenization alone, and the rest without it.
    # compute_score's default (a query_max_length of None means 3/4 of max_length).
    query_max_length = xflag.query_max_length if xflag.query_max_length is not None else xflag.max_length * 3 // 4

    def flag_ids(pairs):
        return xflag._encode_pairs([q for q, _ in pairs], [p for _, p in pairs], query_max_length, xflag.max_length)

    def flag_tokenize_only(pairs, langs):
        flag_ids(pairs)
        return None

    def flag_prepare(pairs, langs):
        cached = dict(zip(map(tuple, pairs), flag_ids(pairs)))
        languages = list(xflag.model.config.languages)
        return [tuple(pair) for pair in pairs], _lang_index(languages, langs), cached

    def flag_pretokenized(state):
        pairs, lang_ids, cached = state
        logits = fi.score_pairs(xflag.model, xflag.tokenizer, pairs, lang_ids,
                                tokenize_fn=lambda queries, passages: [cached[pair] for pair in zip(queries, passages)])
        return logits.view(-1).cpu().numpy()

    runner.measure(f"XMFlagReranker {label} tokenization only", flag_tokenize_only)
    runner.measure(f"XMFlagReranker {label} ids precomputed", flag_pretokenized, prepare=flag_prepare)
    del xflag
    bc.free_memory()


def build_parser() -> argparse.ArgumentParser:
    parser = bc.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", default=None, help="workloads as QUERIESxPASSAGES, comma-separated")
    parser.add_argument("--all-variants", action="store_true", help="the GPU variant list on CPU too (testing)")
    parser.add_argument("--one-language", action="store_true", help="skip the five-language workloads")
    parser.add_argument("--slow-limit", type=float, default=None,
                        help="seconds a slow variant may take on one large workload before it is timed on a prefix")
    parser.add_argument("--time-budget", type=float, default=None, help="stop starting new workloads after this")
    return parser


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    if args.slow_limit is None:
        args.slow_limit = 8.0 if args.small else 12.0
    return args


if __name__ == "__main__":
    bc.main(lambda a: run_benchmark(_defaults(a)), build_parser())
