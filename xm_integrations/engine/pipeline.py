"""The fast path put together: tokenize in chunks, plan batches by padded tokens, overlap the host with the device.

:func:`score_pairs` runs a sequence-classification XMOD model (Mono-XM) over (query, passage) pairs,
:func:`encode_texts` an XMOD encoder with a caller's head (ColBERT-XM documents) over texts. Both
order inputs by length in characters, tokenize chunk ``k + 1`` in a background thread while the
device runs chunk ``k`` (:func:`run_pipelined`), cut each chunk into batches by a token budget with
their rows grouped by language (:mod:`.planning`), and copy pinned batches asynchronously. Nothing
changes what a model computes, except rounding from the chosen dtype (:mod:`.precision`). Why each
piece is there, with the runs that kept it: ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from xm_integrations.compat.transformers import attention_implementation
from xm_integrations.engine.config import DEFAULT_MAX_TOKENS_CPU, DEFAULT_MAX_TOKENS_CUDA
from xm_integrations.engine.planning import pad_batch, plan_batches
from xm_integrations.engine.precision import precision
from xm_integrations.engine.tokenization import tokenize
from xm_integrations.xmod.adapters import install_fast_adapters

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FIRST_CHUNK",
    "encode_texts",
    "model_attention_mask",
    "pool_chunk_size",
    "prepare_batches",
    "run_pipelined",
    "score_pairs",
]


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
    similar lengths.
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
    that call only, so two GPUs ran slower than one. Two chunks per worker keep the load balanced
    while each call is large enough for the fast path's pipeline.
    """
    return max(1, min(math.ceil(count / (2 * max(1, workers))), MAX_POOL_CHUNK))


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_attention_mask(model: torch.nn.Module, attention_mask: Tensor, padded: bool) -> Tensor | None:
    """The attention mask to give the XMOD model for a batch; ``padded``: whether any row is padded (known on the host).

    Under SDPA, transformers turns a 2D mask into SDPA's own form and first asks ``mask.all()`` to
    skip it when nothing is padded: on a GPU that is a device synchronisation in every forward pass,
    which kept the host from queuing the next batch while the GPU ran this one. SDPA's form is given
    here directly: ``None`` without padding (what transformers chooses then), otherwise the
    ``(batch, 1, 1, length)`` booleans that transformers would broadcast (``True``: attend). Other
    attention implementations get the 2D mask as usual.
    """
    if attention_implementation(model.config) != "sdpa":
        return attention_mask
    return attention_mask[:, None, None, :].bool() if padded else None


def prepare_batches(
    sequences: list[list[int]],
    lang_ids: np.ndarray | None,
    pad_id: int,
    max_tokens: int,
    max_batch_size: int | None,
    group_languages: bool,
    pin: bool,
    balance: bool = True,
) -> list[tuple[np.ndarray, Tensor, Tensor, Tensor | None, bool]]:
    """Plan, pad and pin one chunk's batches: ``(indices, input_ids, attention_mask, lang_ids, padded)`` each.

    The batches of :func:`~xm_integrations.engine.planning.plan_batches`; ``lang_ids`` stay on the
    CPU (the adapter dispatch reads them without a device synchronisation).
    """
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
        batches = prepare_batches(sequences, chunk_langs, pad_id, max_tokens, max_batch_size, group_languages, pin,
                                   balance)
        return chunk, batches

    def compute(prepared):
        chunk, batches = prepared
        outputs = []
        for indices, input_ids, attention_mask, batch_langs, padded in batches:
            input_ids = input_ids.to(device, non_blocking=True)
            attention_mask = attention_mask.to(device, non_blocking=True)
            model_mask = model_attention_mask(model, attention_mask, padded)
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
