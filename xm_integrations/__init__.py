"""XMOD retrieval models (ColBERT-XM, Mono-XM) as first-class citizens of sentence-transformers and FlagEmbedding.

Model classes are imported on first use, so ``import xm_integrations`` stays cheap (no torch) and
FlagEmbedding remains optional. The layers, bottom up: :mod:`.errors`; :mod:`.languages` (what
people type, one adapter per input); :mod:`.compat` (every private upstream name); :mod:`.xmod` (every
contact with transformers' XMOD); :mod:`.engine` (the fast inference path); :mod:`.scoring`
(MaxSim); :mod:`.models` (``MonoXM``, ``ColBERTXM`` and their shared core);
:mod:`.integrations` (FlagEmbedding); :mod:`.index` (persistent indexes); :mod:`.distributed` (Ray);
then :mod:`.evaluation`, :mod:`.training` (fine-tuning), :mod:`.hub`, :mod:`.cli` and :mod:`.testing` on top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xm_integrations.engine import FastInferenceConfig
from xm_integrations.errors import MissingLanguageError, XMIntegrationsError
from xm_integrations.integrations.flagembedding.registration import install as _install_flag_registration
from xm_integrations.languages.resolution import (
    XMOD_LANGUAGE_CODES,
    XMOD_LANGUAGES,
    UnknownLanguageError,
    resolve_language,
)

# FlagAutoReranker.from_finetuned("antoinelouis/mono-xm") gives an XMFlagReranker, once FlagEmbedding
# is imported (now or later); this imports nothing from FlagEmbedding.
_install_flag_registration()

if TYPE_CHECKING:
    from xm_integrations.integrations.flagembedding.late_interaction import XMColBERTReranker
    from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker
    from xm_integrations.languages.detection import detect_language
    from xm_integrations.models.colbert_xm.model import ColBERTXM
    from xm_integrations.models.mono_xm import MonoXM
    from xm_integrations.scoring.late_interaction import (
        PackedTokens,
        maxsim,
        maxsim_pairwise,
        pack_token_embeddings,
        pad_token_embeddings,
    )
    from xm_integrations.xmod.compiled_layers import compile_xmod_layers

__version__ = "0.1.0"

_LAZY = {
    "ColBERTXM": "xm_integrations.models.colbert_xm.model",
    "MonoXM": "xm_integrations.models.mono_xm",
    "XMColBERTReranker": "xm_integrations.integrations.flagembedding.late_interaction",
    "XMFlagReranker": "xm_integrations.integrations.flagembedding.reranker",
    "compile_xmod_layers": "xm_integrations.xmod.compiled_layers",
    "detect_language": "xm_integrations.languages.detection",
    "maxsim": "xm_integrations.scoring",
    "maxsim_pairwise": "xm_integrations.scoring",
    "PackedTokens": "xm_integrations.scoring",
    "pack_token_embeddings": "xm_integrations.scoring",
    "pad_token_embeddings": "xm_integrations.scoring",
}

__all__ = [
    "XMOD_LANGUAGES",
    "XMOD_LANGUAGE_CODES",
    "ColBERTXM",
    "FastInferenceConfig",
    "MissingLanguageError",
    "XMIntegrationsError",
    "MonoXM",
    "PackedTokens",
    "UnknownLanguageError",
    "XMColBERTReranker",
    "XMFlagReranker",
    "compile_xmod_layers",
    "detect_language",
    "maxsim",
    "maxsim_pairwise",
    "pack_token_embeddings",
    "pad_token_embeddings",
    "resolve_language",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xm_integrations' has no attribute {name!r}")
