"""What every wrapper of an XMOD model shares, written once.

* :class:`XmodWrapper` -- attaching to the XMOD model inside the wrapper (its language API resolving
  what people type, the adapter dispatch that runs only the adapters present, the length cap, the
  default language), the fast-path gate, and the fast path's config.
* :func:`serve_pool_chunks` -- a pool worker loop that reports every error as a result and keeps
  serving, so a caller never waits for a chunk nobody will answer (FlagEmbedding's worker exits
  silently on the first error).
* :func:`select_worker_device` -- a pool worker makes its own GPU the current CUDA device.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from transformers import XmodPreTrainedModel

from xm_integrations.engine.config import FastInferenceConfig, resolve_fast_inference
from xm_integrations.engine.precision import fast_path_enabled
from xm_integrations.languages.mixin import XmodLanguageMixin
from xm_integrations.models.checkpoints import max_input_tokens
from xm_integrations.xmod.adapters import install_fast_adapters
from xm_integrations.xmod.language_api import find_xmod_model, install_language_resolution

__all__ = ["XmodWrapper", "drop_unused_none", "select_worker_device", "serve_pool_chunks"]

logger = logging.getLogger(__name__)


class XmodWrapper(XmodLanguageMixin):
    """The shared core of ``MonoXM``, ``ColBERTXM``, ``XMFlagReranker`` (and, through its model, ``XMColBERTReranker``).

    A subclass calls :meth:`_attach_xmod` at the end of its constructor; :meth:`_xmod_container`
    says which module holds the XMOD model (the wrapper itself for sentence-transformers, its
    ``model`` for FlagEmbedding).
    """

    fast_inference: bool | FastInferenceConfig

    def _xmod_container(self) -> torch.nn.Module:
        return self  # type: ignore[return-value]

    def _xmod_model(self) -> XmodPreTrainedModel:
        return find_xmod_model(self._xmod_container())

    def _attach_xmod(self, *, language: str | None, fast_inference: bool | FastInferenceConfig) -> XmodPreTrainedModel:
        """Install the language API and the adapter dispatch on this instance's XMOD model, then the default language."""
        self.fast_inference = fast_inference
        xmod = self._xmod_model()
        install_language_resolution(xmod)
        install_fast_adapters(xmod)
        if language is not None:
            self.set_default_language(language)
        return xmod

    def _capped_length(self, current: int | None, requested: int | None) -> int | None:
        """``current`` capped at the positions this XMOD model can embed; a warning if the user asked for more."""
        limit = max_input_tokens(self._xmod_model().config)
        if limit is None or (current is not None and current <= limit):
            return current
        if requested is not None:
            logger.warning("max_length=%s exceeds the %s tokens XMOD can embed; using %s.", requested, limit, limit)
        return limit

    def _fast_config(self) -> FastInferenceConfig:
        """The fast path's settings (the defaults when ``fast_inference`` is ``True``)."""
        return resolve_fast_inference(self.fast_inference) or FastInferenceConfig()

    def _fast_path_allowed(self, arguments: Iterable[str], allowed: frozenset[str], device: Any) -> bool:
        """The one gate: only arguments the fast path reproduces, the fast path on, one device."""
        return not (set(arguments) - allowed) and fast_path_enabled(self.fast_inference, device)


def drop_unused_none(kwargs: dict[str, Any], unused_when_none: frozenset[str]) -> dict[str, Any]:
    """``kwargs`` without the arguments that mean "not used" when ``None`` (stock passes ``pool=None``, ...)."""
    return {key: value for key, value in kwargs.items() if value is not None or key not in unused_when_none}


def select_worker_device(device: Any) -> None:
    """In a child process (a pool worker), make ``device`` the current CUDA device; elsewhere do nothing.

    Neither sentence-transformers' nor FlagEmbedding's workers do it: a worker serving ``cuda:1``
    kept ``cuda:0`` current, so whatever torch places on the current device (pinned host buffers,
    the default stream, the caching allocator's context) went through the first GPU's context.
    The caller's own process is never changed (its current device is the user's).
    """
    if device is None or multiprocessing.parent_process() is None:
        return
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None and torch.cuda.current_device() != device.index:
        torch.cuda.set_device(device)


def serve_pool_chunks(input_queue: Any, output_queue: Any, score: Callable[[Any, dict[str, Any]], Any],
                      describe: str) -> None:
    """Serve ``[*tag, inputs, kwargs]`` messages until terminated: put ``[*tag, result, None]`` or ``[*tag, None, error]``.

    Every failure is reported with its traceback and the worker keeps serving, so the caller sees
    the error and no later chunk goes unanswered. ``describe`` names the worker in the log.
    """
    while True:
        *tag, inputs, kwargs = input_queue.get()
        try:
            result = score(inputs, kwargs)
        except Exception as exc:  # noqa: BLE001 - every error must reach the caller
            logger.exception("Error in %s", describe)
            output_queue.put([*tag, None, "".join(traceback.format_exception(exc))])
        else:
            output_queue.put([*tag, result, None])
