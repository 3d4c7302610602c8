"""Shared pieces of the benchmarks in ``scripts/``: a random xmod-base-size model, inputs, timing, ceilings, FLOPs, tables.

Every ``benchmarks/bench_*.py`` that defines ``run_benchmark(args) -> list[dict]`` and uses
:func:`main` from here is picked up by ``benchmarks/bench_all.py``. Rows are plain dicts; the columns
that ``bench_all.py`` prints are :data:`TABLE_COLUMNS`.

Model: ``facebook/xmod-base``'s shape (hidden 768, 12 layers, 12 heads, FFN 3072, 81 language
adapters with bottleneck 384, vocabulary 250,002, 514 positions) with random weights drawn by
transformers' own initialiser (normal, std 0.02), saved to a temporary folder in float32 like the
published checkpoints, so every stock loader reads it as it would read ``antoinelouis/mono-xm``.

Tokenizer: an XLM-R tokenizer (sentencepiece Unigram, ``<s> <pad> </s> <unk> <mask>`` = ids 0-4)
over a synthetic 250,002-entry vocabulary whose pieces are ``▁`` + a letters-only word, one per id.
A text made of those words tokenizes to exactly one token per word, so input lengths are exact.
Its speed is that of the real XLM-R tokenizer's model type (measured: about the same tokens per
second as the tiny test tokenizer on real multilingual text).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from xm_integrations.languages.resolution import XMOD_LANGUAGE_CODES  # noqa: E402

#: The five languages of the "mixed" workloads (adapter codes of xmod-base).
FIVE_LANGUAGES = ("en_XX", "fr_XX", "de_DE", "es_XX", "zh_CN")
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

TABLE_COLUMNS = (
    ("bench", "bench", "{}"),
    ("workload", "workload", "{}"),
    ("variant", "variant", "{}"),
    ("items_per_s", "items/s", "{:,.0f}"),
    ("ms_per_1k", "ms/1k", "{:,.1f}"),
    ("tokens_per_s", "tok/s", "{:,.0f}"),
    ("speedup", "x best stock", "{:.2f}"),
    ("mfu", "MFU", "{:.1%}"),
    ("bandwidth_frac", "BW/copy", "{:.1%}"),
    ("peak_mem_gib", "peak GiB", "{:.2f}"),
    ("first_call_s", "1st call s", "{:.1f}"),
    ("max_rel_err", "max rel err", "{:.1e}"),
    ("err_over_std", "err/std", "{:.3f}"),
    ("top10_same", "top10 same", "{:.0%}"),
)


# --------------------------------------------------------------------------------------------------
# Model spec and checkpoints
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """The shape of the random XMOD model."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 250_002
    num_languages: int = 81
    adapter_reduction_factor: int = 2
    max_position_embeddings: int = 514

    @property
    def name(self) -> str:
        return (f"xmod h{self.hidden_size} L{self.num_hidden_layers} A{self.num_attention_heads} "
                f"{self.num_languages} langs vocab {self.vocab_size:,}")


#: facebook/xmod-base's shape.
XMOD_BASE = ModelSpec()
#: A thinner, shallower model with the same vocabulary and adapters (CPU checks at moderate cost).
XMOD_SMALL = ModelSpec(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536)
#: What ``--small`` uses: enough to exercise every code path on a 2-core CPU in about a minute.
XMOD_TINY = ModelSpec(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
SPECS = {"base": XMOD_BASE, "small": XMOD_SMALL, "tiny": XMOD_TINY}


def word(index: int) -> str:
    """The letters-only word of vocabulary entry ``index`` (bijective base 26: a, b, ..., z, aa, ...)."""
    index += 1
    letters = []
    while index:
        index, remainder = divmod(index - 1, 26)
        letters.append(chr(97 + remainder))
    return "".join(reversed(letters))


_WORDS: list[str] | None = None


def words() -> list[str]:
    global _WORDS
    if _WORDS is None:
        _WORDS = [word(i) for i in range(XMOD_BASE.vocab_size - len(SPECIAL_TOKENS))]
    return _WORDS


def build_tokenizer(vocab_size: int = XMOD_BASE.vocab_size):
    """An ``XLMRobertaTokenizer`` with ``vocab_size`` entries: 5 special tokens, then ``▁<word(i)>``."""
    from transformers import XLMRobertaTokenizer

    vocab = [(token, 0.0) for token in SPECIAL_TOKENS]
    vocab += [("▁" + w, -12.0) for w in words()[: vocab_size - len(SPECIAL_TOKENS)]]
    return XLMRobertaTokenizer(vocab=vocab)


def xmod_config(spec: ModelSpec, *, default_language: str | None, **kwargs):
    from transformers import XmodConfig

    return XmodConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        adapter_reduction_factor=spec.adapter_reduction_factor,
        languages=list(XMOD_LANGUAGE_CODES[: spec.num_languages]),
        default_language=default_language,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **kwargs,
    )


def _init_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_mono_xm_checkpoint(path: str | Path, spec: ModelSpec, *, seed: int = 0,
                             default_language: str = "en_XX") -> Path:
    """Write a random ``XmodForSequenceClassification`` (one label, float32) plus tokenizer to ``path``.

    ``default_language`` is set so that stock loaders (``CrossEncoder``, ``FlagReranker``) run.
    Weights are drawn on the GPU when there is one (seconds instead of a minute on CPU).
    """
    from transformers import XmodForSequenceClassification

    path = Path(path)
    if (path / "config.json").exists():
        return path
    torch.manual_seed(seed)
    config = xmod_config(spec, default_language=default_language, num_labels=1,
                         architectures=["XmodForSequenceClassification"])
    with torch.device(_init_device()):
        model = XmodForSequenceClassification(config).eval()
    model.save_pretrained(path)
    build_tokenizer(spec.vocab_size).save_pretrained(path)
    del model
    free_memory()
    return path


def build_colbert_xm_checkpoint(path: str | Path, spec: ModelSpec, *, seed: int = 0, dim: int = 128,
                                query_maxlen: int = 32, doc_maxlen: int = 300,
                                default_language: str | None = "en_XX") -> Path:
    """Write a random colbert-ai ``HF_ColBERT``-layout checkpoint (``roberta.*`` + ``linear.weight``, float32)."""
    from safetensors.torch import save_file
    from transformers import XmodModel

    from xm_integrations.testing.checkpoints import colbert_artifact_metadata

    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = xmod_config(spec, default_language=default_language, architectures=["HF_ColBERT"])
    with torch.device(_init_device()):
        encoder = XmodModel(config, add_pooling_layer=False).eval()
        linear = torch.nn.Linear(config.hidden_size, dim, bias=False)
        torch.nn.init.normal_(linear.weight, std=config.initializer_range)
    tensors = {f"roberta.{key}": value.detach().cpu().contiguous() for key, value in encoder.state_dict().items()}
    tensors["linear.weight"] = linear.weight.detach().cpu().contiguous()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(path)
    metadata = colbert_artifact_metadata(dim=dim, query_maxlen=query_maxlen, doc_maxlen=doc_maxlen, name="colbert-xm")
    (path / "artifact.metadata").write_text(json.dumps(metadata, indent=4) + "\n")
    build_tokenizer(spec.vocab_size).save_pretrained(path)
    del encoder, tensors
    free_memory()
    return path


def work_dir(args: argparse.Namespace) -> Path:
    """Where checkpoints are written (``--work-dir``, else a folder under the system temp dir)."""
    root = Path(args.work_dir) if getattr(args, "work_dir", None) else Path(tempfile.gettempdir()) / "xm_bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def passage_lengths(count: int, rng: np.random.Generator, low: int = 50, high: int = 300) -> np.ndarray:
    """Realistic mixed passage lengths in tokens: log-normal around 120 tokens, clipped to [low, high].

    Mean about 135, a long tail up to ``high``, like web passages cut at sentence boundaries.
    """
    return np.clip(np.round(rng.lognormal(math.log(120), 0.45, size=count)), low, high).astype(int)


def random_text(length: int, rng: np.random.Generator, vocab_size: int = XMOD_BASE.vocab_size) -> str:
    vocab = words()
    ids = rng.integers(0, vocab_size - len(SPECIAL_TOKENS), size=length)
    return " ".join(vocab[i] for i in ids)


@dataclass
class PairWorkload:
    """(query, passage) pairs grouped by query; ``languages[i]`` is pair ``i``'s adapter code."""

    name: str
    pairs: list[tuple[str, str]]
    languages: list[str]
    groups: list[np.ndarray]  # pair indices per query, for top-10 checks
    token_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # with special tokens

    @property
    def n(self) -> int:
        return len(self.pairs)


def make_pair_workload(name: str, n_queries: int, per_query: int, languages: Sequence[str], *,
                       seed: int, vocab_size: int = XMOD_BASE.vocab_size) -> PairWorkload:
    """``n_queries`` queries (8-24 tokens), each with ``per_query`` passages (:func:`passage_lengths`).

    Each pair gets a language drawn uniformly from ``languages`` (the passage's language).
    """
    rng = np.random.default_rng(seed)
    pairs, langs, groups = [], [], []
    for q in range(n_queries):
        query_length = int(rng.integers(8, 25))
        query = random_text(query_length, rng, vocab_size)
        lengths = passage_lengths(per_query, rng)
        start = len(pairs)
        for length in lengths:
            pairs.append((query, random_text(int(length), rng, vocab_size)))
            langs.append(str(rng.choice(list(languages))))
        groups.append(np.arange(start, len(pairs)))
    # <s> query </s></s> passage </s>: 4 special tokens; every word is one token.
    token_lengths = np.array([len(q.split()) + len(p.split()) + 4 for q, p in pairs])
    return PairWorkload(name, pairs, langs, groups, np.minimum(token_lengths, 512))


# --------------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------------


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


#: ``compile()`` variants measured on CUDA: the default, and inductor's C++ wrapper (less host time
#: per batch, a longer first compilation).
COMPILE_VARIANTS = {"compile()": {}, "compile(cpp_wrapper)": {"options": {"cpp_wrapper": True}}}


def compiled_variants(args: argparse.Namespace, model: torch.nn.Module, first_call: Callable[[], Any], device: str,
                      prefix: str, *, gpu_variants: bool) -> Iterator[str]:
    """The wanted ``<prefix> compile()`` rows (``compile(cpp_wrapper)`` only with ``gpu_variants``),
    one at a time: ``model.compile(...)``, ``first_call()`` (which compiles: untimed by the rows,
    its seconds printed), then the row's name for the caller to measure; the model is uncompiled
    again before the next."""
    for label, compile_kwargs in COMPILE_VARIANTS.items():
        variant = f"{prefix} {label}"
        if not wanted(args, variant) or (compile_kwargs and not gpu_variants):
            continue
        model.compile(**compile_kwargs)
        sync(device)
        start = time.perf_counter()
        first_call()
        sync(device)
        print(f"# {variant}: first call (64 inputs, compiles) {time.perf_counter() - start:.1f} s", flush=True)
        yield variant
        remove_compiled_layers(model)


@contextlib.contextmanager
def fast_config(model: Any, **changes: Any) -> Iterator[None]:
    """Run the block with ``model``'s fast path configured differently (public ``FastInferenceConfig``), then restore it."""
    from dataclasses import replace

    from xm_integrations import FastInferenceConfig
    from xm_integrations.engine.config import resolve_fast_inference

    saved = model.fast_inference
    model.fast_inference = replace(resolve_fast_inference(saved) or FastInferenceConfig(), **changes)
    try:
        yield
    finally:
        model.fast_inference = saved


def chunking(model: Any, chunk_size: int, *, ordered: bool):
    """Chunks doubling up to ``chunk_size`` inputs, in input order (``ordered=False``: the pipeline as it
    was before inputs were ordered by characters) or ordered by characters as the default is."""
    return fast_config(model, chunk_size=chunk_size, order_by_length=ordered)


def tokenizing_between_launches(model: Any):
    """The fast path without its background tokenizer thread: each chunk is tokenized by the thread
    that queues the GPU work, after it queued the chunk before (the GPU runs that queue meanwhile)."""
    return fast_config(model, background_tokenization=False)


def remove_compiled_layers(model: torch.nn.Module) -> None:
    """Undo ``compile()`` on the XMOD layers of ``model``: each layer runs its own forward again, and
    the graphs compiled so far are dropped, so that the next variant compiles (and times its first
    call) from scratch."""
    for module in model.modules():
        module.__dict__.pop("forward", None)
    torch._dynamo.reset()


@dataclass
class Timing:
    seconds: float  # median
    runs: list[float]
    peak_mem_gib: float | None
    result: Any = None


def timed_once(fn: Callable[[], Any], device: str) -> float:
    """Seconds of one ``fn()`` call, synchronised before and after (a first call that compiles)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_call(fn: Callable[[], Any], device: str, *, repeats: int = 3, max_seconds: float = 30.0,
              warmup: Callable[[], Any] | None = None) -> Timing:
    """Median wall time of ``fn()`` (synchronised before and after), and peak GPU memory of the first run.

    ``warmup`` (default: ``fn`` itself) runs once first, untimed. Repeats stop early when the
    runs so far have taken ``max_seconds``; slow baselines are then timed once.
    """
    (warmup or fn)()
    sync(device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    runs: list[float] = []
    result = None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        runs.append(time.perf_counter() - start)
        if sum(runs) >= max_seconds:
            break
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return Timing(statistics.median(runs), runs, peak, result)


def cuda_event_time(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10) -> float:
    """Median seconds of ``fn()`` between CUDA events (device time, launch overhead included)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------------
# Ceilings measured on the same card
# --------------------------------------------------------------------------------------------------


def measure_ceilings(device: str, *, small: bool = False) -> dict[str, float]:
    """bf16 matrix-multiply rate (FLOP/s) and device-to-device copy bandwidth (bytes read + written per s).

    Random data (never zeros), a product of 8192^3 and a 2 GiB copy on CUDA; on CPU a 2048^3 float32
    and bf16 product and a 256 MiB copy, so that the small runs report something comparable.
    """
    device = torch.device(device)
    out: dict[str, float] = {}
    gen = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        n = 8192
        for dtype, key in ((torch.bfloat16, "matmul_bf16_flops"), (torch.float32, "matmul_fp32_flops")):
            a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            c = torch.empty(n, n, device=device, dtype=dtype)
            seconds = cuda_event_time(lambda: torch.mm(a, b, out=c), warmup=3, repeats=10)
            out[key] = 2 * n**3 / seconds
            del a, b, c
        nbytes = 2 * 2**30
        src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device, generator=gen)
        dst = torch.empty_like(src)
        seconds = cuda_event_time(lambda: dst.copy_(src), warmup=3, repeats=20)
        out["copy_bytes_per_s"] = 2 * nbytes / seconds
        del src, dst
        free_memory()
    else:
        n = 1024 if small else 2048
        for dtype, key in ((torch.bfloat16, "matmul_bf16_flops"), (torch.float32, "matmul_fp32_flops")):
            a = torch.randn(n, n, dtype=dtype, generator=gen)
            b = torch.randn(n, n, dtype=dtype, generator=gen)
            torch.mm(a, b)
            start = time.perf_counter()
            reps = 3
            for _ in range(reps):
                torch.mm(a, b)
            out[key] = 2 * n**3 * reps / (time.perf_counter() - start)
        nbytes = 256 * 2**20
        src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, generator=gen)
        dst = torch.empty_like(src)
        dst.copy_(src)
        start = time.perf_counter()
        for _ in range(3):
            dst.copy_(src)
        out["copy_bytes_per_s"] = 2 * nbytes * 3 / (time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------------


def xmod_forward_flops(spec: ModelSpec, lengths: Sequence[int] | np.ndarray, *, head: str = "classification",
                       colbert_dim: int = 128) -> float:
    """Model FLOPs of an XMOD forward over sequences of the given (unpadded) token lengths.

    Per layer and sequence of ``L`` tokens, hidden ``d``, FFN ``f``, adapter bottleneck ``b``
    (one adapter per token): Q, K, V and output projections ``8 L d^2``; scores and weighted sum
    ``4 L^2 d``; FFN ``4 L d f``; adapter ``4 L d b``. Embedding lookups, layer norms, activations
    and biases are not counted (they are not matrix work). Heads: ``classification`` (dense d x d +
    d x 1 on the first token), ``colbert`` (``d x colbert_dim`` per token), ``none``.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    d, f = spec.hidden_size, spec.intermediate_size
    b = d // spec.adapter_reduction_factor
    per_layer = 8 * lengths * d * d + 4 * lengths**2 * d + 4 * lengths * d * f + 4 * lengths * d * b
    total = spec.num_hidden_layers * per_layer.sum()
    if head == "classification":
        total += len(lengths) * (2 * d * d + 2 * d)
    elif head == "colbert":
        total += 2 * lengths.sum() * d * colbert_dim
    return float(total)


# --------------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def score_accuracy(logits: np.ndarray, reference: np.ndarray, groups: Sequence[np.ndarray], k: int = 10) -> dict:
    """Compare raw scores (logits) with the float32 reference on the same inputs.

    * ``max_rel_err``: max over pairs of ``|p - p_ref| / |p_ref|`` on the sigmoid scores that
      ``CrossEncoder.predict`` returns (``FlagReranker(normalize=True)`` too).
    * ``max_rel_err_logit``: the same on raw logits (``|l - l_ref| / |l_ref|``).
    * ``err_over_std``: max ``|l - l_ref|`` over the standard deviation of the reference logits;
      how large the error is against the spread that ranks passages.
    * ``top10_same``: fraction of queries whose top-``k`` passages come in the same order.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if logits.shape != reference.shape or not np.all(np.isfinite(logits)):
        return {"max_rel_err": float("nan"), "max_rel_err_logit": float("nan"), "err_over_std": float("nan"),
                "top10_same": 0.0}
    p, p_ref = sigmoid(logits), sigmoid(reference)
    abs_err = np.abs(logits - reference)
    same = [np.array_equal(np.argsort(-logits[g], kind="stable")[:k], np.argsort(-reference[g], kind="stable")[:k])
            for g in groups]
    return {
        "max_rel_err": float(np.max(np.abs(p - p_ref) / np.abs(p_ref))),
        "max_rel_err_logit": float(np.max(abs_err / np.maximum(np.abs(reference), 1e-30))),
        "err_over_std": float(abs_err.max() / max(reference.std(), 1e-30)),
        "top10_same": float(np.mean(same)),
    }


# --------------------------------------------------------------------------------------------------
# Environment, output, tables
# --------------------------------------------------------------------------------------------------


def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
    }
    for name in ("transformers", "sentence_transformers", "FlagEmbedding", "triton", "numpy", "tokenizers"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 - absent or broken is just "absent" here
            info[name] = None
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["sm_count"] = props.multi_processor_count
        info["cuda"] = torch.version.cuda
    else:
        info["gpu"] = None
        info["cpu"] = platform.processor() or platform.machine()
        try:
            info["load_average"] = os.getloadavg()
        except OSError:
            pass
    return info


def _cell(value: Any, fmt: str, missing: str) -> str:
    """One table cell: ``fmt`` applied to ``value``, ``missing`` for no value or NaN, ``str`` if ``fmt`` does not fit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_table(rows: Sequence[dict], columns=TABLE_COLUMNS) -> str:
    present = [c for c in columns if any(row.get(c[0]) is not None for row in rows)]
    header = [title for _, title, _ in present]
    body = []
    for row in rows:
        cells = [_cell(row.get(key), fmt, "-") for key, _, fmt in present]
        body.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in body]
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict], columns=TABLE_COLUMNS, skip=("bench",)) -> str:
    """The same table as :func:`format_table`, in Markdown (for ``benchmarks/NOTES.md``)."""
    present = [c for c in columns if c[0] not in skip and any(row.get(c[0]) is not None for row in rows)]
    lines = ["| " + " | ".join(title for _, title, _ in present) + " | note |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(present))) + "|---|"]
    for row in rows:
        cells = [_cell(row.get(key), fmt, "") for key, _, fmt in present]
        lines.append("| " + " | ".join(cells) + " | " + str(row.get("note") or "") + " |")
    return "\n".join(lines)


def add_speedups(rows: list[dict], stock_prefix: str = "stock") -> None:
    """``speedup`` = items/s over the best stock variant of the same bench and workload."""
    best: dict[tuple, float] = {}
    for row in rows:
        if str(row.get("variant", "")).startswith(stock_prefix) and row.get("items_per_s"):
            key = (row["bench"], row["workload"])
            best[key] = max(best.get(key, 0.0), row["items_per_s"])
    for row in rows:
        key = (row.get("bench"), row.get("workload"))
        if key in best and row.get("items_per_s"):
            row["speedup"] = row["items_per_s"] / best[key]


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="small scale for a CPU machine (minutes)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", default=None, help="write rows and environment to this JSON file")
    parser.add_argument("--work-dir", default=None, help="where the random checkpoints are written")
    parser.add_argument("--only", default=None, help="comma-separated substrings (or =exact names): run only matching variants")
    parser.add_argument("--model", choices=sorted(SPECS), default=None,
                        help="model shape (default: base; tiny with --small)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing repeats of one variant after this many seconds")
    return parser


def resolve_spec(args: argparse.Namespace) -> ModelSpec:
    return SPECS[args.model or ("tiny" if args.small else "base")]


def resolve_device(args: argparse.Namespace) -> str:
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def wanted(args: argparse.Namespace, variant: str) -> bool:
    if not getattr(args, "only", None):
        return True
    for part in (p.strip() for p in args.only.split(",")):
        if part.startswith("=") and variant == part[1:]:
            return True
        if part and not part.startswith("=") and part in variant:
            return True
    return False


def write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class Recorder:
    """Collects rows, prints each as it comes, and rewrites the JSON after each (a killed run keeps its rows)."""

    def __init__(self, args: argparse.Namespace, bench: str, device: str, extra: dict | None = None) -> None:
        self.args, self.bench, self.device = args, bench, device
        self.rows: list[dict] = []
        self.meta: dict[str, Any] = {"environment": environment(device), **(extra or {})}

    def add(self, **row: Any) -> dict:
        row = {"bench": self.bench, **row}
        self.rows.append(row)
        shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items() if not isinstance(v, (list, dict))}
        print(json.dumps(shown, default=_json_default), flush=True)
        self.flush()
        return row

    def flush(self) -> None:
        if self.args.json:
            write_json(self.args.json, {"meta": self.meta, "rows": self.rows})


def main(run: Callable[[argparse.Namespace], list[dict]], parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args()
    rows = run(args)
    add_speedups(rows)
    print()
    print(format_table(rows))
    if args.json:
        payload = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {"meta": {}}
        payload["rows"] = rows
        write_json(args.json, payload)
