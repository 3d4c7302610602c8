"""Languages: what people type, the adapter each input goes through.

Owns the 81-language XMOD table and :func:`resolve_language` (:mod:`.resolution`), detection of an
input's language for ``language="auto"`` (:mod:`.detection`), the ``language=`` argument resolved
into one adapter per input and carried through batching and pools (:mod:`.routing`), and the
``languages`` / ``default_language`` / ``set_default_language`` API every wrapper shares
(:mod:`.mixin`). May import :mod:`xm_integrations.errors` and the XMOD contact layer
(:mod:`xm_integrations.xmod`), never a model class. Importing this package stays light (no torch):
only :mod:`.resolution` is imported here.
"""

from xm_integrations.errors import UnknownLanguageError
from xm_integrations.languages.resolution import (
    DEFAULT_CHINESE,
    XMOD_LANGUAGE_CODES,
    XMOD_LANGUAGES,
    XmodLanguage,
    language_to_iso,
    resolve_language,
)

__all__ = [
    "DEFAULT_CHINESE",
    "XMOD_LANGUAGES",
    "XMOD_LANGUAGE_CODES",
    "UnknownLanguageError",
    "XmodLanguage",
    "language_to_iso",
    "resolve_language",
]
