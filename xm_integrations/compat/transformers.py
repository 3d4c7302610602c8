"""transformers internals we read or patch, each with why; checked on transformers 5.17 (the GPU image) and 5.23.

``tests/compat/test_contract.py`` asserts each one for the installed version, so an upgrade that
moves one fails there, naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "ADAPTER_ATTRIBUTE",
    "attention_implementation",
    "outputs_recorded",
    "xmod_output_modules",
]

#: ``XmodOutput.lang_adapter(lang_ids, hidden_states)``: the per-layer adapter dispatch, which loops
#: over every adapter of the checkpoint behind boolean masks. :mod:`xm_integrations.xmod.adapters`
#: replaces it per instance (an instance attribute of this name shadows the method).
ADAPTER_ATTRIBUTE = "lang_adapter"

try:  # the context variable of transformers' recorder of per-layer outputs (output_hidden_states, ...)
    from transformers.utils.output_capturing import _active_collector as _ACTIVE_COLLECTOR
except ImportError:  # moved: outputs_recorded() then answers False, and compiled layers run for every call
    _ACTIVE_COLLECTOR = None


def xmod_output_modules(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The ``XmodOutput`` modules of ``model`` (any module holding XMOD layers), recognised by their parts.

    Recognised by ``adapter_modules`` and ``ln_before_adapter`` rather than by class, so that a
    model loaded from any XMOD subclass is found.
    """
    for module in model.modules():
        if hasattr(module, "adapter_modules") and hasattr(module, "ln_before_adapter"):
            yield module


def attention_implementation(config: Any) -> str | None:
    """``config._attn_implementation``: which attention kernel the model runs (``"sdpa"``, ``"eager"``, ...).

    Read to hand SDPA its boolean mask ready-made (transformers would check and convert it on every
    call) and to refuse compiling an implementation the compiled layers do not reproduce.
    """
    return getattr(config, "_attn_implementation", None)


def outputs_recorded() -> bool:
    """Whether the running forward pass records per-layer outputs (``output_hidden_states``, ``output_attentions``).

    transformers records them with hooks on the layer modules, which compiled graphs do not call,
    so a recording call must take the uncompiled path.
    """
    return _ACTIVE_COLLECTOR is not None and bool(_ACTIVE_COLLECTOR.get())
