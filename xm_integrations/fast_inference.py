"""Fast inference paths for XMOD models, as small functions the model classes can call.

Each piece was kept because ``scripts/bench_rerank.py`` / ``scripts/bench_encode.py`` showed it
paying on an H200 without costing accuracy (``docs/benchmarks.md`` has the numbers):

* :func:`install_fast_adapters` -- XMOD's ``XmodOutput.lang_adapter`` in transformers 5 loops over
  *every* adapter of the checkpoint (81 for xmod-base) in every layer, with a boolean-mask gather and
  scatter each time: 972 host-device synchronisations and ~8,000 kernel launches per forward pass,
  whatever the batch holds. The replacement runs only the adapters present in the batch, on
  contiguous slices (each batch's rows are grouped by language: one run per language present), and
  gives the same numbers. It also raises on an out-of-range adapter id, where XMOD silently zeroes
  the output.
* :func:`default_autocast_dtype` / :func:`precision` -- fp16 matrix products (autocast over float32
  weights, or half-precision weights as loaded), float32 accumulation in the matrix units, scores
  upcast to float32.
* :func:`plan_batches` -- batches cut by a token budget (padded tokens per batch) rather than by a
  count, over inputs sorted by length; languages share batches, each batch's rows grouped by language.
* :func:`pad_batch`, :func:`run_pipelined` -- inputs tokenized once, padded to a multiple of 8, pinned
  and copied asynchronously while the previous batch runs; tokenization of the next chunk runs in a
  background thread (the Rust tokenizer releases the GIL).
* :func:`score_pairs` / :func:`encode_texts` -- the above put together for a sequence-classification
  head (Mono-XM) and for token embeddings (ColBERT-XM).

Nothing here changes what a model computes, except rounding from the chosen dtype.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from xm_integrations.engine.config import DEFAULT_MAX_TOKENS_CPU, DEFAULT_MAX_TOKENS_CUDA, resolve_fast_inference

__all__ = [
    "ColBERTDocumentHead",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_TOKENS_CPU",
    "DEFAULT_MAX_TOKENS_CUDA",
    "adapter_input",
    "adapter_runs",
    "apply_adapter_runs",
    "colbert_document_ids",
    "default_autocast_dtype",
    "encode_texts",
    "fast_path_enabled",
    "install_fast_adapters",
    "lang_segments",
    "pad_batch",
    "plan_batches",
    "pool_chunk_size",
    "precision",
    "run_adapters",
    "run_pipelined",
    "score_pairs",
    "tokenize",
]

#: Padded tokens per batch on CUDA. The H200 measurements flatten out from about 16k tokens (the


# --------------------------------------------------------------------------------------------------
# Language adapters
# --------------------------------------------------------------------------------------------------

_segment_cache = threading.local()


def lang_segments(lang_ids: Tensor | Sequence[int], num_languages: int | None = None) -> list[tuple[int, int, int]]:
    """Runs of equal adapter ids as ``(adapter_index, start, stop)``, in batch order.

    A CPU tensor or a list costs nothing; a CUDA tensor costs one synchronisation, cached per tensor
    object, so the 12 layers of one forward pass share it. Float ids (XMOD builds the default
    language's ids with ``torch.ones``) are accepted.

    Raises:
        IndexError: an id outside ``[0, num_languages)`` (XMOD would silently zero the adapter output).
    """
    if isinstance(lang_ids, Tensor):
        cached = getattr(_segment_cache, "entry", None)
        if cached is not None and cached[0]() is lang_ids:
            return cached[1]
        ids = [int(value) for value in lang_ids.reshape(-1).tolist()]
    else:
        ids = [int(value) for value in lang_ids]
    segments: list[tuple[int, int, int]] = []
    start = 0
    for position in range(1, len(ids) + 1):
        if position == len(ids) or ids[position] != ids[start]:
            segments.append((ids[start], start, position))
            start = position
    if num_languages is not None:
        bad = sorted({index for index, _, _ in segments if not 0 <= index < num_languages})
        if bad:
            raise IndexError(
                f"Language adapter ids {bad} are out of range: the checkpoint has {num_languages} adapters "
                f"(ids 0 to {num_languages - 1})."
            )
    if isinstance(lang_ids, Tensor):
        _segment_cache.entry = (weakref.ref(lang_ids), segments)
    return segments


class _FastLangAdapter:
    """``XmodOutput.lang_adapter`` that runs only the adapters present, on contiguous slices.

    Same arithmetic as transformers' implementation (layer norm placement, residual, dropout); a
    plain object rather than a bound method so that the model still pickles into worker pools.
    """

    def __init__(self, output: torch.nn.Module) -> None:
        self.output = output

    def __call__(self, lang_ids: Tensor, hidden_states: Tensor) -> Tensor:
        output = self.output
        hidden_states, residual = adapter_input(output, hidden_states)
        return run_adapters(output, lang_ids, hidden_states) + residual


def adapter_input(output: torch.nn.Module, hidden_states: Tensor) -> tuple[Tensor, Tensor]:
    """``XmodOutput.lang_adapter`` before the adapters: ``(what they take, what their output is added to)``.

    The optional layer norm (the adapter's own, or the layer's reused) and whether the residual is
    taken before or after it, as the checkpoint's config says.
    """
    residual = hidden_states
    if output.adapter_layer_norm is not None:
        hidden_states = output.adapter_layer_norm(hidden_states)
    elif output.adapter_reuse_layer_norm:
        hidden_states = output.LayerNorm(hidden_states)
    if output.ln_before_adapter:
        residual = hidden_states
    return hidden_states, residual


def adapter_runs(output: torch.nn.Module, lang_ids: Tensor | Sequence[int]) -> tuple[list[torch.nn.Module], list[int]]:
    """The adapters of ``output`` (an ``XmodOutput``) that a batch runs, one per run of equal ids
    (:func:`lang_segments`), and where each run starts: ``(adapters, starts)``.

    Host-side work, kept apart from :func:`apply_adapter_runs` so that a compiled graph can take
    the adapters and starts as its inputs.
    """
    adapters = list(output.adapter_modules.values())
    segments = lang_segments(lang_ids, len(adapters))
    return [adapters[index] for index, _, _ in segments], [start for _, start, _ in segments]


def apply_adapter_runs(output: torch.nn.Module, adapters: Sequence[torch.nn.Module], starts: Sequence[int],
                       hidden_states: Tensor) -> Tensor:
    """Each run of rows of ``hidden_states`` (starting at ``starts``) through its adapter, then XMOD's
    dropout (the identity in eval mode): one call per run, on a contiguous slice.

    The slices are taken over tokens rather than rows, and runs are given by where they start:
    under ``torch.compile`` a dimension of size 1 is specialised, so a run of one row would compile
    a graph of its own; a run of one row is still many tokens. (A start of 1, a first run of one
    row, is specialised once.)
    """
    if len(adapters) == 1:
        adapted = adapters[0](hidden_states)
    else:
        tokens_per_row = hidden_states.shape[1:-1].numel()
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        stops = [*starts[1:], hidden_states.shape[0]]
        adapted = torch.cat([adapter(tokens[start * tokens_per_row : stop * tokens_per_row])
                             for adapter, start, stop in zip(adapters, starts, stops)]).view(hidden_states.shape)
    return output.dropout(adapted)


def run_adapters(output: torch.nn.Module, lang_ids: Tensor, hidden_states: Tensor) -> Tensor:
    """Each row of ``hidden_states`` through its language's adapter of ``output`` (an ``XmodOutput``),
    then XMOD's dropout: :func:`adapter_runs`, then :func:`apply_adapter_runs`.

    Rows grouped by language make one adapter call per language present.
    """
    return apply_adapter_runs(output, *adapter_runs(output, lang_ids), hidden_states)


def install_fast_adapters(model: torch.nn.Module) -> int:
    """Replace the language-adapter dispatch of every XMOD layer in ``model`` (in place, idempotent).

    Works on any module that contains XMOD layers (a sentence-transformers model, a FlagEmbedding
    reranker's ``model``, a bare ``XmodModel``). Returns the number of layers patched.
    """
    patched = 0
    for module in model.modules():
        if hasattr(module, "adapter_modules") and hasattr(module, "ln_before_adapter"):
            if not isinstance(module.__dict__.get("lang_adapter"), _FastLangAdapter):
                module.lang_adapter = _FastLangAdapter(module)
            patched += 1
    return patched


# --------------------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------------------


def fast_path_enabled(setting: Any, device: Any) -> bool:
    """Whether a model class takes its fast path for a call on ``device`` (the call's ``device=``).

    ``setting`` is the class's ``fast_inference`` argument (default ``True``; a
    :class:`~xm_integrations.FastInferenceConfig` means on). The fast path
    measured faster on every device: 12-14x the best stock
    configuration on an H200, and 1.3-2.9x the stock batching on a 2-core CPU since tokenization
    goes straight through the Rust tokenizer and languages share batches (``docs/benchmarks.md``).
    A list of devices means a pool, whose workers decide for themselves.
    """
    return resolve_fast_inference(setting) is not None and not isinstance(device, list)


def default_autocast_dtype(device: torch.device | str, weight_dtype: torch.dtype = torch.float32) -> torch.dtype | None:
    """What the fast path runs float32 weights' matrix products in: fp16 under autocast on CUDA, nothing on CPU.

    Measured on an H200 (``docs/benchmarks.md``): ``MonoXM`` with fp16 autocast over float32 weights,
    layer norms and residual stream is 12-14x the best stock configuration
    (``FlagReranker(use_fp16=True)``) with less than half its score error (max relative error
    2-3e-4 against 7e-4 to 1e-3), and it is how colbert-ai encodes on a GPU (its ``Checkpoint``
    runs under ``torch.cuda.amp.autocast``). Weights already in half precision (a model loaded with
    ``dtype=torch.float16``) run as they are: ``None``, since autocast would only add float32 layer
    norms around them. CPU stays float32 (the CPU target is no regression against stock float32).
    """
    if torch.device(device).type != "cuda" or weight_dtype != torch.float32:
        return None
    return torch.float16


@contextlib.contextmanager
def precision(device: torch.device | str, dtype: torch.dtype | None, *, autocast: bool = False) -> Iterator[None]:
    """Run the enclosed forward passes with float32 accumulation in the matrix units.

    ``autocast=True`` keeps float32 weights and runs the matrix products in ``dtype`` (layer norms,
    softmax and the residual stream stay float32): slower than half-precision weights, closer to
    float32. Otherwise the model's own weight dtype decides and this only sets the accumulation.
    """
    device = torch.device(device)
    saved = None
    if device.type == "cuda":
        matmul = torch.backends.cuda.matmul
        saved = (matmul.allow_bf16_reduced_precision_reduction, matmul.allow_fp16_reduced_precision_reduction)
        matmul.allow_bf16_reduced_precision_reduction = False
        matmul.allow_fp16_reduced_precision_reduction = False
    try:
        if autocast and dtype is not None and dtype != torch.float32:
            with torch.autocast(device.type, dtype=dtype):
                yield
        else:
            yield
    finally:
        if saved is not None:
            matmul.allow_bf16_reduced_precision_reduction, matmul.allow_fp16_reduced_precision_reduction = saved


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    lang_ids: Sequence[int] | np.ndarray | None = None,
    *,
    max_tokens: int,
    max_batch_size: int | None = None,
    group_languages: bool = True,
    multiple_of: int = 8,
    balance: bool = True,
) -> list[np.ndarray]:
    """Cut inputs into batches of at most ``max_tokens`` padded tokens.

    Inputs are sorted by length, longest first (so a batch that does not fit shows up at once); a
    batch is padded to its longest input rounded up to ``multiple_of``, and it grows while
    ``size x padded length <= max_tokens``. Languages share batches: cutting each language apart
    left five mixed languages with batches of half the budget, 19-40% slower on the H200. With
    ``group_languages`` (default) each batch's rows are then ordered by language, so XMOD runs one
    adapter call per language present in a layer, on a contiguous slice. With ``balance`` (default)
    the batches are evened out: 200 inputs that need two batches become two of about 100, not 190
    and 10 (the H200 runs a nearly empty batch at a fraction of its rate).

    Returns:
        Index arrays into the inputs, one per batch, covering every input exactly once.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError("lengths must be one-dimensional")
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    count = len(lengths)
    if count == 0:
        return []
    langs = np.zeros(count, dtype=np.int64) if lang_ids is None else np.asarray(lang_ids, dtype=np.int64)
    order = np.lexsort((langs, -lengths))  # last key is primary: length descending; ties grouped by language
    sorted_lengths = lengths[order]
    cuts = _greedy_cuts(sorted_lengths, max_tokens, max_batch_size, multiple_of)
    if balance and len(cuts) > 1:
        cuts = _balanced_cuts(sorted_lengths, max_tokens, max_batch_size, multiple_of, len(cuts))
    batches = []
    for a, b in cuts:
        batch = order[a:b]
        if group_languages:
            batch = batch[np.argsort(langs[batch], kind="stable")]
        batches.append(batch)
    return batches


def _greedy_cuts(lengths: np.ndarray, max_tokens: int, max_batch_size: int | None,
                 multiple_of: int) -> list[tuple[int, int]]:
    """Cut a run sorted longest first: each batch takes as many inputs as its first one allows."""
    cuts, start, count = [], 0, len(lengths)
    while start < count:
        padded = _round_up(int(lengths[start]), multiple_of)
        fit = max(1, max_tokens // max(padded, 1))
        if max_batch_size is not None:
            fit = min(fit, max_batch_size)
        stop = min(count, start + fit)
        cuts.append((start, stop))
        start = stop
    return cuts


def _balanced_cuts(lengths: np.ndarray, max_tokens: int, max_batch_size: int | None, multiple_of: int,
                   batches: int) -> list[tuple[int, int]]:
    """The same number of batches as greedy cutting, but evened out (no nearly empty last batch).

    The smallest budget that still needs no more than ``batches`` batches is found by bisection;
    cutting greedily with it spreads the inputs evenly, and never exceeds ``max_tokens``.
    """
    low, high = 1, max_tokens
    while low < high:
        middle = (low + high) // 2
        if len(_greedy_cuts(lengths, middle, max_batch_size, multiple_of)) <= batches:
            high = middle
        else:
            low = middle + 1
    return _greedy_cuts(lengths, low, max_batch_size, multiple_of)


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, *, multiple_of: int = 8, pin: bool = False
) -> tuple[Tensor, Tensor]:
    """Right-pad token id lists into ``(input_ids, attention_mask)`` int64 tensors."""
    width = _round_up(max(len(sequence) for sequence in sequences), multiple_of)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = sequence
        attention_mask[row, : len(sequence)] = 1
    ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
    if pin:
        ids, mask = ids.pin_memory(), mask.pin_memory()
    return ids, mask


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def _truncating_backend(tokenizer: Any, max_length: int | None, strategy: str = "longest_first") -> Any:
    """A private copy of a fast tokenizer's Rust backend, set to truncate as ``tokenizer(...,
    truncation=strategy, max_length=max_length)`` does (on the tokenizer's side), or ``None`` for a
    tokenizer without one. Cached per tokenizer, length and strategy; never changed after it is
    made, so threads share it safely (transformers re-configures its own backend on each call).

    A Unigram model's word cache (XLM-R's sentencepiece model) is switched off in the copy: it is
    one lock-guarded map shared by all of the tokenizer's Rust threads, and on a 16-CPU H200 host
    that lock was the bound, 11.9k pairs/s with it against 21.6k without (``docs/benchmarks.md``).
    The cache only memoises words, so the ids are the same.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    key = (max_length, strategy)
    with _BACKENDS_LOCK:
        per_setting = _BACKENDS.setdefault(tokenizer, {})
        if key not in per_setting:
            from tokenizers import Tokenizer

            private = Tokenizer.from_str(backend.to_str())
            private.no_padding()
            if max_length is None:
                private.no_truncation()
            else:
                private.enable_truncation(max_length, stride=0, strategy=strategy,
                                          direction=getattr(tokenizer, "truncation_side", "right"))
            resize_cache = getattr(private.model, "_resize_cache", None)  # tokenizers >= 0.21
            if type(private.model).__name__ == "Unigram" and resize_cache is not None:
                resize_cache(0)
            per_setting[key] = private
        return per_setting[key]


def tokenize(
    tokenizer: Any,
    first: Sequence[str],
    second: Sequence[str] | None = None,
    *,
    max_length: int | None,
    truncation: str = "longest_first",
    add_special_tokens: bool = True,
) -> list[list[int]]:
    """Token ids without padding, truncated with ``truncation`` (transformers' strategy name) to ``max_length``.

    The same ids as ``tokenizer(first, second, truncation=truncation, max_length=max_length,
    add_special_tokens=add_special_tokens)["input_ids"]`` (``tests/test_fast_inference.py`` checks
    it), from the Rust backend directly: transformers' Python post-processing of each encoding
    holds the GIL for tens of microseconds per input, which the H200 runs measured as the bound of
    the pipeline (the background tokenizer thread starved the thread that launches the GPU work).
    A tokenizer without a Rust backend is called as usual.
    """
    backend = _truncating_backend(tokenizer, max_length, truncation)
    if backend is not None:
        inputs = list(zip(first, second)) if second is not None else list(first)
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which nothing here reads.
        encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [encoding.ids for encoding in encode_batch(inputs, add_special_tokens=add_special_tokens)]
    kwargs: dict[str, Any] = {"padding": False, "return_attention_mask": False, "return_token_type_ids": False,
                              "add_special_tokens": add_special_tokens}
    if max_length is not None:
        kwargs.update(truncation=truncation, max_length=max_length)
    encoded = tokenizer(list(first), list(second), **kwargs) if second is not None else tokenizer(list(first), **kwargs)
    return encoded["input_ids"]


def run_pipelined(
    chunks: Sequence[Any], prepare: Callable[[Any], Any], compute: Callable[[Any], Any], *, background: bool = True
) -> list[Any]:
    """``[compute(prepare(chunk)) for chunk in chunks]`` with ``prepare`` of the next chunk in a thread.

    ``prepare`` is the CPU side (tokenize, plan, pad, pin); ``compute`` launches the device work. With
    a GPU, ``compute`` returns as soon as its kernels are queued, so tokenization of chunk ``k+1``
    overlaps the GPU running chunk ``k``.
    """
    if not background or len(chunks) <= 1:
        return [compute(prepare(chunk)) for chunk in chunks]
    results = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xm-prepare") as pool:
        pending = pool.submit(prepare, chunks[0])
        for index in range(len(chunks)):
            prepared = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(prepare, chunks[index + 1])
            results.append(compute(prepared))
    return results


#: Inputs in the first tokenization chunk: the GPU starts after this many are tokenized.
FIRST_CHUNK = 256


#: Inputs per tokenization chunk once the first chunks have doubled up to it (``chunk_size``).
DEFAULT_CHUNK_SIZE = 1024


def _chunks(count: int, chunk_size: int, first: int = FIRST_CHUNK) -> list[range]:
    """Consecutive ranges covering ``count`` inputs: ``first``, then doubling up to ``chunk_size``.

    The device starts after a small first chunk (a few milliseconds of tokenization). While the
    device runs chunk ``k`` the background thread tokenizes chunk ``k + 1``: a chunk twice the size
    of the one before takes longer to tokenize than the device takes to run that one, and the
    device waits. Chunks therefore stop growing at ``chunk_size``, kept small. Small chunks used to
    cost padding (a chunk of unsorted inputs cuts into batches of mixed lengths); the inputs are
    now ordered by their length in characters first (:func:`_input_order`), so each chunk holds
    similar lengths. Measured on an H200 against the previous 4,096 in input order: 0.93-1.12x
    eager, 1.03-1.32x compiled (``docs/benchmarks.md``).
    """
    ranges, start, size = [], 0, max(1, min(first, chunk_size))
    while start < count:
        stop = min(count, start + size)
        ranges.append(range(start, stop))
        start, size = stop, min(chunk_size, size * 2)
    return ranges


#: The most inputs :func:`pool_chunk_size` sends a pool worker at once.
MAX_POOL_CHUNK = 16384


def pool_chunk_size(count: int, workers: int) -> int:
    """Inputs per chunk sent to each worker of a multi-device pool: two chunks per worker.

    sentence-transformers' default (ten chunks per worker, at most 5,000) gives each worker calls of
    a few hundred pairs for 10,000: each call tokenizes before its GPU starts and plans batches over
    that call only, so two H200s ran slower than one (0.77x). Two chunks per worker keep the load
    balanced while each call is large enough for the fast path's pipeline.
    """
    return max(1, min(math.ceil(count / (2 * max(1, workers))), MAX_POOL_CHUNK))


# --------------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _model_attention_mask(model: torch.nn.Module, attention_mask: Tensor, padded: bool) -> Tensor | None:
    """The attention mask to give the XMOD model for a batch; ``padded``: whether any row is padded (known on the host).

    Under SDPA, transformers turns a 2D mask into SDPA's own form and first asks ``mask.all()`` to
    skip it when nothing is padded: on a GPU that is a device synchronisation in every forward pass,
    which kept the host from queuing the next batch while the GPU ran this one. SDPA's form is given
    here directly: ``None`` without padding (what transformers chooses then), otherwise the
    ``(batch, 1, 1, length)`` booleans that transformers would broadcast (``True``: attend). Other
    attention implementations get the 2D mask as usual.
    """
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return attention_mask
    return attention_mask[:, None, None, :].bool() if padded else None


def _prepare_batches(
    sequences: list[list[int]],
    lang_ids: np.ndarray | None,
    pad_id: int,
    max_tokens: int,
    max_batch_size: int | None,
    group_languages: bool,
    pin: bool,
    balance: bool = True,
) -> list[tuple[np.ndarray, Tensor, Tensor, Tensor | None, bool]]:
    lengths = [len(sequence) for sequence in sequences]
    plan = plan_batches(
        lengths, lang_ids, max_tokens=max_tokens, max_batch_size=max_batch_size, group_languages=group_languages,
        balance=balance,
    )
    prepared = []
    for indices in plan:
        input_ids, attention_mask = pad_batch([sequences[i] for i in indices], pad_id, pin=pin)
        padded = any(lengths[i] < input_ids.shape[1] for i in indices)
        # lang_ids stay on the CPU: the fast adapters read them without a device synchronisation.
        batch_langs = None if lang_ids is None else torch.from_numpy(np.ascontiguousarray(lang_ids[indices]))
        prepared.append((indices, input_ids, attention_mask, batch_langs, padded))
    return prepared


def _input_order(sizes: Sequence[int]) -> np.ndarray:
    """Input indices, longest first by ``sizes`` (characters): the order inputs are tokenized in.

    Token lengths follow character lengths closely enough that each chunk of :func:`_chunks` then
    holds inputs of similar token lengths, and its batches need little padding however small the
    chunk; sentence-transformers orders its batches by characters the same way.
    """
    return np.argsort(-np.asarray(sizes, dtype=np.int64), kind="stable")


@torch.inference_mode()
def _run_model(
    model: torch.nn.Module,
    tokenizer: Any,
    make_sequences: Callable[[np.ndarray], list[list[int]]],
    sizes: Sequence[int],
    lang_ids: Sequence[int] | np.ndarray | None,
    forward: Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Any],
    *,
    max_tokens: int | None,
    max_batch_size: int | None,
    group_languages: bool,
    chunk_size: int,
    balance: bool = True,
    ordered: bool = True,
    background: bool = True,
    show_progress_bar: bool = False,
    progress_desc: str = "Batches",
) -> list[tuple[np.ndarray, Any]]:
    device = _model_device(model)
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS_CUDA if device.type == "cuda" else DEFAULT_MAX_TOKENS_CPU
    langs = None if lang_ids is None else np.asarray(lang_ids, dtype=np.int64)
    pin = device.type == "cuda"
    pad_id = tokenizer.pad_token_id

    def prepare(chunk: np.ndarray):
        sequences = make_sequences(chunk)
        chunk_langs = None if langs is None else langs[chunk]
        batches = _prepare_batches(sequences, chunk_langs, pad_id, max_tokens, max_batch_size, group_languages, pin,
                                   balance)
        return chunk, batches

    def compute(prepared):
        chunk, batches = prepared
        outputs = []
        for indices, input_ids, attention_mask, batch_langs, padded in batches:
            input_ids = input_ids.to(device, non_blocking=True)
            attention_mask = attention_mask.to(device, non_blocking=True)
            model_mask = _model_attention_mask(model, attention_mask, padded)
            outputs.append((chunk[indices], forward(input_ids, attention_mask, model_mask, batch_langs)))
        return outputs

    install_fast_adapters(model)
    model.eval()
    count = len(sizes)
    order = _input_order(sizes) if ordered else np.arange(count)
    chunks = [order[chunk.start : chunk.stop] for chunk in _chunks(count, chunk_size)]
    with tqdm(total=count, desc=progress_desc, disable=not show_progress_bar) as progress:

        def compute_and_count(prepared):
            outputs = compute(prepared)
            progress.update(sum(len(indices) for indices, _ in outputs))
            return outputs

        results = run_pipelined(chunks, prepare, compute_and_count, background=background and len(chunks) > 1)
    return [item for chunk in results for item in chunk]


def score_pairs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    lang_ids: Sequence[int] | np.ndarray | None = None,
    *,
    max_length: int | None = 512,
    tokenize_fn: Callable[[Sequence[str], Sequence[str]], list[list[int]]] | None = None,
    max_tokens: int | None = None,
    max_batch_size: int | None = None,
    group_languages: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    autocast_dtype: torch.dtype | None = None,
    balance: bool = True,
    ordered: bool = True,
    background: bool = True,
    show_progress_bar: bool = False,
) -> Tensor:
    """Raw logits of a sequence-classification XMOD model for (query, passage) pairs, in input order.

    Args:
        model: An ``XmodForSequenceClassification`` (any dtype; see :func:`default_autocast_dtype`).
        tokenizer: Its tokenizer; pairs are encoded as ``tokenizer(query, passage)``, truncated
            longest-first to ``max_length``, exactly as ``CrossEncoder`` does.
        tokenize_fn: Replaces that tokenization: ``tokenize_fn(queries, passages)`` returns one id
            list per pair, special tokens included (FlagEmbedding truncates differently).
        lang_ids: One adapter index per pair, or ``None`` for the checkpoint's default language.
        max_tokens: Padded tokens per batch (default: :data:`DEFAULT_MAX_TOKENS_CUDA` / ``_CPU``).
        max_batch_size: Optional cap on pairs per batch.
        group_languages: Order each batch's rows by language (one adapter call per language present).
        chunk_size: The most pairs tokenized per background step (sorting and batching happen
            per chunk, over pairs ordered by length in characters; chunks start at
            :data:`FIRST_CHUNK` and double up to this, so the GPU starts early and tokenization
            overlaps it).
        autocast_dtype: Run under ``torch.autocast`` with this dtype (float32 weights); see
            :func:`default_autocast_dtype`. Pairs whose half-precision score is not finite
            (overflow) are scored again without autocast.
        ordered: Order pairs by length in characters before cutting chunks (less padding).
        background: Tokenize the next chunk in a background thread.
        show_progress_bar: A progress bar over the pairs (updated as each chunk is queued).

    Returns:
        A float32 tensor of shape ``(len(pairs), num_labels)`` on the model's device.
    """
    pairs = list(pairs)
    device = _model_device(model)
    if lang_ids is None:
        default = getattr(model.config, "default_language", None)
        if default is not None:
            lang_ids = np.full(len(pairs), list(model.config.languages).index(default), dtype=np.int64)

    def make_sequences(chunk: np.ndarray) -> list[list[int]]:
        queries, passages = [pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk]
        if tokenize_fn is not None:
            return tokenize_fn(queries, passages)
        return tokenize(tokenizer, queries, passages, max_length=max_length)

    def forward(input_ids: Tensor, attention_mask: Tensor, model_mask: Tensor | None,
                batch_langs: Tensor | None) -> Tensor:
        return model(input_ids=input_ids, attention_mask=model_mask, lang_ids=batch_langs).logits.float()

    num_labels = getattr(model.config, "num_labels", 1)
    if not pairs:
        return torch.empty((0, num_labels), device=device)
    with precision(device, autocast_dtype, autocast=autocast_dtype is not None):
        outputs = _run_model(
            model, tokenizer, make_sequences, [len(query) + len(passage) for query, passage in pairs], lang_ids, forward,
            max_tokens=max_tokens, max_batch_size=max_batch_size, group_languages=group_languages,
            chunk_size=chunk_size, balance=balance, ordered=ordered, background=background,
            show_progress_bar=show_progress_bar, progress_desc="Pairs",
        )
    scores = torch.empty((len(pairs), num_labels), dtype=torch.float32, device=device)
    for indices, logits in outputs:
        scores[torch.from_numpy(indices).to(device)] = logits
    if autocast_dtype is not None:
        bad = torch.nonzero(~torch.isfinite(scores).all(dim=1)).flatten().tolist()
        if bad:
            redo = score_pairs(model, tokenizer, [pairs[i] for i in bad],
                               None if lang_ids is None else np.asarray(lang_ids)[bad], max_length=max_length,
                               tokenize_fn=tokenize_fn, max_tokens=max_tokens, max_batch_size=max_batch_size,
                               group_languages=group_languages, chunk_size=chunk_size)
            scores[torch.tensor(bad, device=device)] = redo
    return scores


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    lang_ids: Sequence[int] | np.ndarray | None = None,
    *,
    head: Callable[[Tensor, Tensor, Tensor], Any],
    split: Callable[[Any], Sequence[Any]] | None = None,
    max_length: int | None = 512,
    tokenize_fn: Callable[[Sequence[str]], list[list[int]]] | None = None,
    max_tokens: int | None = None,
    max_batch_size: int | None = None,
    group_languages: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    autocast_dtype: torch.dtype | None = None,
    balance: bool = True,
    ordered: bool = True,
    background: bool = True,
    show_progress_bar: bool = False,
    progress_desc: str = "Texts",
) -> list[Any]:
    """Run an XMOD encoder over texts: ``head(last_hidden_state, input_ids, attention_mask)`` per batch.

    ``head`` must not synchronise with the device (every batch is queued first); ``split`` then
    turns each head output into one item per row (default: ``list(output)``), after all batches
    are queued. For ColBERT-XM use :class:`ColBERTDocumentHead` and its ``split``.
    ``tokenize_fn`` replaces plain tokenization (ColBERT-XM inserts its marker token, see
    :func:`colbert_document_ids`). The progress bar counts texts under ``progress_desc``.
    Returns the items in input order.
    """
    texts = list(texts)
    if not texts:
        return []
    device = _model_device(model)
    encoder = getattr(model, "roberta", model)
    if lang_ids is None:
        default = getattr(encoder.config, "default_language", None)
        if default is not None:
            lang_ids = np.full(len(texts), list(encoder.config.languages).index(default), dtype=np.int64)

    def make_sequences(chunk: np.ndarray) -> list[list[int]]:
        chunk_texts = [texts[i] for i in chunk]
        if tokenize_fn is not None:
            return tokenize_fn(chunk_texts)
        return tokenize(tokenizer, chunk_texts, max_length=max_length)

    def forward(input_ids: Tensor, attention_mask: Tensor, model_mask: Tensor | None,
                batch_langs: Tensor | None) -> Any:
        hidden = encoder(input_ids=input_ids, attention_mask=model_mask, lang_ids=batch_langs).last_hidden_state
        return head(hidden, input_ids, attention_mask)

    with precision(device, autocast_dtype, autocast=autocast_dtype is not None):
        outputs = _run_model(
            encoder, tokenizer, make_sequences, [len(text) for text in texts], lang_ids, forward,
            max_tokens=max_tokens, max_batch_size=max_batch_size, group_languages=group_languages,
            chunk_size=chunk_size, balance=balance, ordered=ordered, background=background,
            show_progress_bar=show_progress_bar, progress_desc=progress_desc,
        )
    split = split or list
    results: list[Any] = [None] * len(texts)
    for indices, output in outputs:
        for index, item in zip(indices.tolist(), split(output)):
            results[index] = item
    return results


# --------------------------------------------------------------------------------------------------
# ColBERT-XM documents
# --------------------------------------------------------------------------------------------------


def colbert_document_ids(tokenizer: Any, texts: Sequence[str], *, doc_maxlen: int, marker_id: int) -> list[list[int]]:
    """colbert-ai 0.2.22's document tokenization as id lists: ``doc_maxlen - 1`` tokens, marker at position 1."""
    ids = tokenize(tokenizer, texts, max_length=doc_maxlen - 1)
    return [sequence[:1] + [marker_id] + sequence[1:] for sequence in ids]


class ColBERTDocumentHead:
    """``normalize(linear(hidden))`` per token, and which tokens a document keeps (real, not in the skiplist).

    Projection in the model's dtype with float32 accumulation, normalisation in float32, vectors
    stored in ``out_dtype`` (default: the model's dtype). :meth:`split` (one device synchronisation
    per batch, after everything is queued) gives each document's kept vectors on ``out_device``
    (default: where they were computed): compact tensors of their own, or with ``compact=False``
    views into one packed tensor per batch (no copy, but a kept view pins the whole batch).
    """

    def __init__(self, weight: Tensor, skiplist_ids: Sequence[int] | Tensor, *, out_dtype: torch.dtype | None = None,
                 out_device: torch.device | str | None = None, compact: bool = True) -> None:
        self.weight = weight
        self.skiplist = torch.as_tensor(list(skiplist_ids) if not isinstance(skiplist_ids, Tensor) else skiplist_ids,
                                        dtype=torch.long, device=weight.device)
        self.out_dtype = out_dtype
        self.out_device = None if out_device is None else torch.device(out_device)
        self.compact = compact

    def __call__(self, hidden: Tensor, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        projected = torch.nn.functional.linear(hidden.to(self.weight.dtype), self.weight)
        vectors = torch.nn.functional.normalize(projected.float(), p=2, dim=-1)
        vectors = vectors.to(self.out_dtype or self.weight.dtype)
        keep = attention_mask.bool()
        if self.skiplist.numel():
            keep &= ~torch.isin(input_ids, self.skiplist)
        return vectors, keep

    def split(self, output: tuple[Tensor, Tensor]) -> list[Tensor]:
        vectors, keep = output
        counts = keep.sum(dim=1).tolist()
        packed = vectors[keep]
        if self.out_device is not None and packed.device != self.out_device:
            packed = packed.to(self.out_device)
        pieces = torch.split(packed, counts)
        return [piece.clone() for piece in pieces] if self.compact else list(pieces)
