"""Register Mono-XM with FlagEmbedding's ``FlagAutoReranker``, without importing FlagEmbedding.

``FlagAutoReranker.from_finetuned(path)`` picks a class by the basename of ``path`` in the mutable
``AUTO_RERANKER_MAPPING``. Adding ``"mono-xm"`` there needs the mapping module, and importing it
takes FlagEmbedding's whole import (over ten seconds here, against about two for
``import xm_integrations``), which also must not fail where the optional extra ``flag`` is not
installed. So :func:`install` registers at once when FlagEmbedding's mapping is already imported,
and otherwise leaves a finder on ``sys.meta_path`` that registers right after the mapping module is
executed, whenever something imports it. Nothing else about the import changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

__all__ = ["MODEL_NAMES", "install", "register"]

logger = logging.getLogger(__name__)

#: The module that holds ``AUTO_RERANKER_MAPPING``.
MAPPING_MODULE = "FlagEmbedding.inference.reranker.model_mapping"

#: Basenames that ``FlagAutoReranker.from_finetuned`` maps to ``XMFlagReranker``.
MODEL_NAMES: tuple[str, ...] = ("mono-xm",)


def register(mapping_module: ModuleType) -> None:
    """Map every name of :data:`MODEL_NAMES` to ``XMFlagReranker`` in ``mapping_module.AUTO_RERANKER_MAPPING``.

    A failure is logged, never raised: it must not break the import of FlagEmbedding. When the
    mapping is imported by :mod:`xm_integrations.integrations.flagembedding.reranker` itself (it imports FlagEmbedding),
    that module is not finished yet; it registers at its end instead.
    """
    partial = sys.modules.get("xm_integrations.integrations.flagembedding.reranker")
    if partial is not None and not hasattr(partial, "XMFlagReranker"):
        return
    try:
        from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker

        for name in MODEL_NAMES:
            mapping_module.AUTO_RERANKER_MAPPING[name] = mapping_module.RerankerConfig(XMFlagReranker)
    except Exception:  # noqa: BLE001
        logger.warning("Could not register Mono-XM with FlagAutoReranker", exc_info=True)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then :func:`register`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks and tools
        return getattr(self._loader, name)


class _MappingFinder(importlib.abc.MetaPathFinder):
    """Finds FlagEmbedding's mapping module with the other finders and wraps its loader."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != MAPPING_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _MappingFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register now if FlagEmbedding's mapping is imported, else when it is; idempotent."""
    module = sys.modules.get(MAPPING_MODULE)
    if module is not None:
        register(module)
    elif not any(isinstance(finder, _MappingFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MappingFinder())
