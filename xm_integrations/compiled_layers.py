"""``torch.compile`` for XMOD encoders: the dense work compiled, the language-adapter dispatch left eager.

Compiling a whole XMOD model does not serve it: each row's adapter is picked from ``lang_ids``
(data-dependent control flow), so the compiler either breaks every layer's graph at the adapter
call, from where the fusions around it are lost, or specialises on a batch's language layout and
compiles again for the next. And sentence-transformers' ``model.compile()`` wraps the module's own
call, which the fast paths of ``MonoXM`` and ``ColBERTXM`` never go through.

Here the encoder runs as one compiled graph per layer -- the previous layer's adapter residual and
layer norm, then attention, feed-forward and the layer norm before the adapters -- with one eager
call in between that runs each language's adapter on its rows
(:func:`xm_integrations.fast_inference.run_adapters`). The graphs are shared by every layer and
every model of a process with the same settings, and with ``dynamic=True`` (the default) one
compilation serves every batch shape. The compiler fuses what eager mode runs as separate
kernels: under fp16 autocast, the float32 residual stream and layer norms and the casts around
every matrix product.

Measured on an H200 (``docs/benchmarks.md``), xmod-base's shape under fp16 autocast: the forward
passes alone went from 29.0-31.5% to 36.7-39.9% model FLOPs utilisation with one language, with
scores within autocast's own rounding, but stayed at 27.0-28.7% with five (the host then takes
longer to queue a compiled batch, 28 ms, than the GPU to run it). End to end the gain is smaller
still (``MonoXM`` 0.87-1.06x, ``ColBERTXM`` 0.98-1.19x) and the first call compiles (6-20 s), so
nothing compiles unless asked: it is ``model.compile()``, for long jobs in one language. Most of
the host's share was inductor's Python wrapper: with ``options={"cpp_wrapper": True}`` the host queued
a batch in 8.6 / 13.9 ms instead of 18.7 / 28.1 ms, and five languages gained as much as one
(1.26x eager), at the price of an 86 s first compilation (not measured end to end).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from xm_integrations.fast_inference import adapter_input, run_adapters

try:  # transformers' collector of recorded outputs (every supported version, >= 5.17, has it)
    from transformers.utils.output_capturing import _active_collector
except ImportError:  # a later move would disable the check below
    _active_collector = None

__all__ = ["CompilableXmodMixin", "compile_xmod_layers"]

#: Attention implementations whose masks ``scaled_dot_product_attention`` takes as they come
#: (SDPA's booleans or ``None``; eager attention's additive float mask).
_SUPPORTED_ATTENTION = ("sdpa", "eager")

_COMPILED: dict[str, tuple[Callable, Callable, Callable]] = {}
_COMPILED_LOCK = threading.Lock()


def _before_adapters(layer: torch.nn.Module, hidden_states: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``XmodLayer.forward`` in inference up to the adapters: ``(adapter input, adapter residual)``."""
    attention, output = layer.attention, layer.output
    residual = hidden_states
    x = attention.output.LayerNorm(hidden_states) if layer.pre_norm else hidden_states
    heads = attention.self
    batch, length = x.shape[:2]
    shape = (batch, length, -1, heads.attention_head_size)
    query = heads.query(x).view(shape).transpose(1, 2)
    key = heads.key(x).view(shape).transpose(1, 2)
    value = heads.value(x).view(shape).transpose(1, 2)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=heads.scaling)
    context = context.transpose(1, 2).reshape(batch, length, -1)
    hidden = attention.output.dense(context) + residual
    if not layer.pre_norm:
        hidden = attention.output.LayerNorm(hidden)
    residual = hidden
    x = output.LayerNorm(hidden) if layer.pre_norm else hidden
    hidden = output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))) + residual
    return adapter_input(output, hidden)


def _after_adapters(layer: torch.nn.Module, adapted: Tensor, residual: Tensor) -> Tensor:
    """The rest of ``XmodLayer.forward``: the adapter residual, then the post-norm layer norm."""
    hidden = adapted + residual
    return hidden if layer.pre_norm else layer.output.LayerNorm(hidden)


def _between_adapters(previous: torch.nn.Module, adapted: Tensor, residual: Tensor, layer: torch.nn.Module,
                      attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The end of one layer and the next layer up to its adapters: one graph, so the layer norm that
    ends a layer fuses with what starts the next."""
    return _before_adapters(layer, _after_adapters(previous, adapted, residual), attention_mask)


def _compiled(settings: dict[str, Any]) -> tuple[Callable, Callable, Callable]:
    """The compiled graphs (first layer, between two layers, last layer) for these ``torch.compile``
    settings, made once per process."""
    key = repr(sorted(settings.items()))
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            _COMPILED[key] = tuple(torch.compile(function, **settings)
                                   for function in (_before_adapters, _between_adapters, _after_adapters))
        return _COMPILED[key]


def _outputs_recorded() -> bool:
    """Whether the running forward pass records per-layer outputs (``output_hidden_states``,
    ``output_attentions``): transformers records them with hooks on the layer and attention modules,
    which the compiled graphs do not call."""
    return _active_collector is not None and bool(_active_collector.get())


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
        first, between, last = _compiled(self.settings)
        layers = list(encoder.layer)
        hidden, residual = first(layers[0], hidden_states, attention_mask)
        for previous, layer in zip(layers, layers[1:]):
            hidden, residual = between(previous, run_adapters(previous.output, lang_ids, hidden), residual, layer,
                                       attention_mask)
        hidden_states = last(layers[-1], run_adapters(layers[-1].output, lang_ids, hidden), residual)
        if encoder.is_pre_norm:
            hidden_states = encoder.LayerNorm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states)


def compile_xmod_layers(model: torch.nn.Module, **compile_kwargs: Any) -> int:
    """Compile the dense work of every XMOD encoder in ``model`` (in place); the adapter dispatch stays eager.

    Args:
        model: Any module holding XMOD encoders (a sentence-transformers model, a bare ``XmodModel``).
        **compile_kwargs: Passed to :func:`torch.compile` (``mode``, ``backend``, ``options``,
            ...); ``dynamic`` defaults to ``True``, so batches of any shape reuse one compilation.

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
        implementation = getattr(layers[0].attention.self.config, "_attn_implementation", None)
        if implementation not in _SUPPORTED_ATTENTION:
            raise ValueError(
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

    def _xmod_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Compile the XMOD layers with :func:`torch.compile`; each language's adapter still runs eagerly.

        Keyword arguments go to :func:`torch.compile` (``dynamic`` defaults to ``True``: one
        compilation serves every batch shape). The first forward pass afterwards compiles (6-20 s
        on an H200). Measured there (``docs/benchmarks.md``): long jobs in one language gain
        (``ColBERTXM`` 100,000 passages 1.19x, ``MonoXM`` 10,000 pairs 1.06x); five mixed languages
        and calls of 1,000 pairs do not (0.87-1.05x), so it is not a default. With five languages
        the host is the bound; ``options={"cpp_wrapper": True}`` halved its time in a probe (the
        forward passes 1.26x eager with one or five languages) but compiles for 86 s. Positional
        arguments are refused, as :func:`torch.compile` takes none besides the model.
        """
        if args:
            raise TypeError(f"compile() takes keyword arguments only (those of torch.compile), got {len(args)} "
                            "positional")
        compile_xmod_layers(self._xmod_model(), **kwargs)
