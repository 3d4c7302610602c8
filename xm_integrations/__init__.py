"""XMOD retrieval models (ColBERT-XM, Mono-XM) as first-class citizens of sentence-transformers and FlagEmbedding."""

from xm_integrations.languages import (
    XMOD_LANGUAGE_CODES,
    XMOD_LANGUAGES,
    UnknownLanguageError,
    resolve_language,
)

__version__ = "0.1.0"

__all__ = [
    "XMOD_LANGUAGES",
    "XMOD_LANGUAGE_CODES",
    "UnknownLanguageError",
    "resolve_language",
]
