"""``torch.compile`` for XMOD encoders: each layer one graph, its language adapters included.

Compiling a whole XMOD model does not serve it: each row's adapter is picked from ``lang_ids``
(data-dependent control flow), so the compiler breaks the graph at every layer's adapter call, or
specialises on one batch's exact language layout and compiles again for the next. And
sentence-transformers' ``model.compile()`` wraps the module's own call, which the fast paths of
``MonoXM`` and ``ColBERTXM`` never go through.

Here the language dispatch is done once per forward pass on the host
(:func:`xm_integrations.engine.pipeline.adapter_runs`: which adapters, where each run of rows
starts), and every layer runs as one compiled graph that takes those adapters and starts as
inputs: attention, feed-forward, one adapter call per run of rows, the residuals and layer
norms. One graph serves every layer and every batch shape of a layout -- how many runs of
languages a batch has (a batch of five languages has five runs; padded or not) -- and each layout
compiles once (:func:`_compiled`). A batch whose rows are not grouped by
language (the stock batching's) is grouped for the encoder and put back after it. The compiler
fuses what eager mode runs as separate kernels: under fp16 autocast, the float32 residual stream
and layer norms and the casts around every matrix product.

Opt-in: each layout's first call compiles (seconds), which would dominate short jobs. Speed-ups
and model FLOPs utilisation measured so far: ``docs/performance.md``; the layouts tried and
dropped: ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from xm_integrations.compat.transformers import attention_implementation, outputs_recorded
from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError
from xm_integrations.xmod.adapters import adapter_input, adapter_runs, apply_adapter_runs, lang_segments

__all__ = ["CompilableXmodMixin", "compile_xmod_layers"]

#: Attention implementations whose masks ``scaled_dot_product_attention`` takes as they come
#: (SDPA's booleans or ``None``; eager attention's additive float mask).
_SUPPORTED_ATTENTION = ("sdpa", "eager")

#: Batches with more runs of languages than this run their layers uncompiled: each count of runs
#: compiles a graph of its own (seconds each).
MAX_COMPILED_RUNS = 8

_COMPILED: dict[tuple[str, int, bool], Callable] = {}
_COMPILED_LOCK = threading.Lock()


def _before_adapters(layer: torch.nn.Module, hidden_states: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``XmodLayer.forward`` in inference up to the adapters: ``(adapter input, adapter residual)``."""
    attention, output = layer.attention, layer.output
    residual = hidden_states
    x = attention.output.LayerNorm(hidden_states) if layer.pre_norm else hidden_states
    heads = attention.self
    batch, length = x.shape[:2]
    # Query, key and value as one matrix product over the concatenated weights (the concatenation is
    # a few megabytes a layer, fused into the graph): faster than three products of a third the width.
    weight = torch.cat([heads.query.weight, heads.key.weight, heads.value.weight])
    bias = torch.cat([heads.query.bias, heads.key.bias, heads.value.bias])
    qkv = F.linear(x, weight, bias).view(batch, length, 3, -1, heads.attention_head_size).permute(2, 0, 3, 1, 4)
    context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attention_mask, scale=heads.scaling)
    context = context.transpose(1, 2).reshape(batch, length, -1)
    hidden = attention.output.dense(context) + residual
    if not layer.pre_norm:
        hidden = attention.output.LayerNorm(hidden)
    residual = hidden
    x = output.LayerNorm(hidden) if layer.pre_norm else hidden
    hidden = output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))) + residual
    return adapter_input(output, hidden)


def _layer_forward(layer: torch.nn.Module, hidden_states: Tensor, attention_mask: Tensor | None,
                   adapters: list[torch.nn.Module], starts: list[int]) -> Tensor:
    """``XmodLayer.forward`` in inference, for rows whose runs of equal languages start at ``starts``
    and use ``adapters`` (:func:`~xm_integrations.engine.pipeline.adapter_runs`)."""
    adapter_in, residual = _before_adapters(layer, hidden_states, attention_mask)
    hidden = apply_adapter_runs(layer.output, adapters, starts, adapter_in) + residual
    return hidden if layer.pre_norm else layer.output.LayerNorm(hidden)


def _compiled(settings: dict[str, Any], runs: int) -> Callable:
    """The compiled layer for these ``torch.compile`` settings and this batch layout (how many runs
    of languages), made once per process.

    Each layout compiles a copy of :func:`_layer_forward`'s code of its own: torch's dynamo keeps
    the graphs of one function's code together and stops compiling it after 8, and the layouts of
    one job could pass that, leaving the rest uncompiled.
    """
    key = (repr(sorted(settings.items())), runs)
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            name = f"_layer_forward_{runs}_runs"
            code = _layer_forward.__code__.replace(co_name=name)
            _COMPILED[key] = torch.compile(types.FunctionType(code, _layer_forward.__globals__, name), **settings)
        return _COMPILED[key]


def _grouped_by_language(lang_ids: Tensor, num_languages: int) -> tuple[Tensor | None, Tensor | list[int]]:
    """``(order, ids)``: the row order that puts each language's rows together (``None`` when they
    already are, as in the fast paths' batches) and the ids in that order.

    The compiled layer takes one input per run of rows, and the same adapter in two runs is a
    different graph input layout (dynamo guards on the aliasing), so a batch like the stock
    batching's, with a language in several runs, is reordered for the encoder and back after it.
    Attention stays within each row, so the order changes nothing else.
    """
    segments = lang_segments(lang_ids, num_languages)
    if len({index for index, _, _ in segments}) == len(segments):
        return None, lang_ids
    runs = sorted(segments, key=lambda segment: segment[0])  # stable: a language's rows keep their order
    order = torch.tensor([row for _, start, stop in runs for row in range(start, stop)])
    return order, [index for index, start, stop in runs for _ in range(start, stop)]


def _outputs_recorded() -> bool:
    """Whether the running forward pass records per-layer outputs (``output_hidden_states``,
    ``output_attentions``): transformers records them with hooks on the layer and attention modules,
    which the compiled graphs do not call."""
    return outputs_recorded()


class _CompiledEncoderForward:
    """``XmodEncoder.forward`` through the compiled graphs, for one encoder instance.

    Anything the graphs do not reproduce runs the encoder's own forward: training (dropout),
    cross-attention, a cache, extra keyword arguments, or a call that records hidden states or
    attention weights. A plain object holding only the encoder and the settings, so that the model
    still pickles into multi-process pools (each worker compiles for itself).
    """

    def __init__(self, encoder: torch.nn.Module, settings: dict[str, Any]) -> None:
        self.encoder = encoder
        self.settings = settings

    def __call__(self, hidden_states: Tensor, lang_ids: Tensor, attention_mask: Tensor | None = None,
                 encoder_hidden_states: Tensor | None = None, encoder_attention_mask: Tensor | None = None,
                 past_key_values: Any = None, use_cache: bool | None = None, **kwargs: Any) -> Any:
        encoder = self.encoder
        if (encoder.training or encoder_hidden_states is not None or past_key_values is not None or use_cache
                or any(value is not None for value in kwargs.values()) or _outputs_recorded()):
            return type(encoder).forward(encoder, hidden_states, lang_ids, attention_mask, encoder_hidden_states,
                                         encoder_attention_mask, past_key_values, use_cache, **kwargs)
        layers = list(encoder.layer)
        order, lang_ids = _grouped_by_language(lang_ids, len(layers[0].output.adapter_modules))
        if order is not None:
            order = order.to(hidden_states.device)
            hidden_states = hidden_states[order]
            if attention_mask is not None and attention_mask.shape[0] == len(order) > 1:
                attention_mask = attention_mask[order]
        runs = [adapter_runs(layer.output, lang_ids) for layer in layers]
        count = len(runs[0][0])
        forward = _layer_forward
        if count <= MAX_COMPILED_RUNS:
            forward = _compiled(self.settings, count)
            if attention_mask is None:
                # An unpadded batch takes the padded batches' graph, masking nothing: a graph of its
                # own would compile once more per count of runs (seconds each), for batches that are
                # rare in mixed lengths but come in every language mix (equal lengths, truncated
                # inputs). SDPA's memory-efficient kernel then runs them instead of flash attention.
                batch, length = hidden_states.shape[:2]
                attention_mask = torch.ones((batch, 1, 1, length), dtype=torch.bool, device=hidden_states.device)
        for layer, (adapters, starts) in zip(layers, runs):
            hidden_states = forward(layer, hidden_states, attention_mask, adapters, starts)
        if order is not None:
            hidden_states = hidden_states[torch.argsort(order)]
        if encoder.is_pre_norm:
            hidden_states = encoder.LayerNorm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states)


def compile_xmod_layers(model: torch.nn.Module, **compile_kwargs: Any) -> int:
    """Compile every XMOD encoder layer in ``model`` (in place), language adapters included.

    Args:
        model: Any module holding XMOD encoders (a sentence-transformers model, a bare ``XmodModel``).
        **compile_kwargs: Passed to :func:`torch.compile` (``mode``, ``backend``, ``options``,
            ...); ``dynamic`` defaults to ``True``, so batches of any shape reuse the compilation
            of their layout (count of language runs).

    Returns:
        The number of layers compiled. Calling again replaces the settings.

    Raises:
        ValueError: the model's attention implementation is not ``"sdpa"`` or ``"eager"``.
    """
    settings = {"dynamic": True, **compile_kwargs}
    compiled = 0
    for module in model.modules():
        layers = getattr(module, "layer", None)
        if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
            continue
        if not all(hasattr(layer, "attention") and hasattr(getattr(layer, "output", None), "adapter_modules")
                   for layer in layers):
            continue
        implementation = attention_implementation(layers[0].attention.self.config)
        if implementation not in _SUPPORTED_ATTENTION:
            raise InvalidArgumentError(
                f"Compiling XMOD layers needs the 'sdpa' or 'eager' attention implementation, the model uses "
                f"{implementation!r}: load it with model_kwargs={{'attn_implementation': 'sdpa'}}."
            )
        module.forward = _CompiledEncoderForward(module, settings)
        compiled += len(layers)
    return compiled


class CompilableXmodMixin:
    """``compile()`` for a sentence-transformers wrapper around one XMOD model (``MonoXM``, ``ColBERTXM``).

    The wrapper implements ``_xmod_model()``. Same verb and arguments as sentence-transformers'
    ``BaseModel.compile``, but what is compiled is every XMOD layer (:func:`compile_xmod_layers`),
    which both the fast paths and the stock ``predict``/``encode`` batching go through.
    """

    _xmod_model: Callable[[], torch.nn.Module]  # provided by the wrapper

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Compile the XMOD layers with :func:`torch.compile`, one graph per layer, adapters included.

        Keyword arguments go to :func:`torch.compile` (``dynamic`` defaults to ``True``: batches of
        any shape, padded or not, reuse one compilation per layout -- count of language runs). The
        first forward pass of each layout compiles (seconds; about a minute with
        ``options={"cpp_wrapper": True}``), which would dominate short jobs, so it is not a default
        (speed-ups: ``docs/performance.md``).
        Positional arguments are refused, as :func:`torch.compile` takes none besides the model.
        """
        if args:
            raise ArgumentTypeError(f"compile() takes keyword arguments only (those of torch.compile), got {len(args)} "
                            "positional")
        compile_xmod_layers(self._xmod_model(), **kwargs)
