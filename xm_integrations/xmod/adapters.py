"""Adapter dispatch: every XMOD layer runs only the language adapters present in a batch.

transformers 5's ``XmodOutput.lang_adapter`` loops over *every* adapter of the checkpoint (81 for
xmod-base) in every layer, each behind a boolean-mask gather and scatter, whatever the batch holds,
and silently zeroes the output for an out-of-range adapter id. :func:`install_fast_adapters`
replaces it, per model instance, by one call per run of equal ids on contiguous slices (batches
group their rows by language), with the same numbers, and an error for an out-of-range id. The
``lang_adapter`` attribute is transformers' name: it is reached through
:mod:`xm_integrations.compat.transformers`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from xm_integrations.compat.transformers import ADAPTER_ATTRIBUTE, xmod_output_modules
from xm_integrations.errors import AdapterIndexError

__all__ = ["adapter_input", "adapter_runs", "apply_adapter_runs", "install_fast_adapters", "lang_segments", "run_adapters"]


_segment_cache = threading.local()


def lang_segments(lang_ids: Tensor | Sequence[int], num_languages: int | None = None) -> list[tuple[int, int, int]]:
    """Runs of equal adapter ids as ``(adapter_index, start, stop)``, in batch order.

    A CPU tensor or a list costs nothing; a CUDA tensor costs one synchronisation, cached per tensor
    object, so the 12 layers of one forward pass share it. Float ids (XMOD builds the default
    language's ids with ``torch.ones``) are accepted.

    Raises:
        AdapterIndexError: an id outside ``[0, num_languages)`` (XMOD would silently zero the adapter output).
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
            raise AdapterIndexError(bad, num_languages)
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
    for module in xmod_output_modules(model):
        if not isinstance(module.__dict__.get(ADAPTER_ATTRIBUTE), _FastLangAdapter):
            setattr(module, ADAPTER_ATTRIBUTE, _FastLangAdapter(module))
        patched += 1
    return patched
