"""The language API shared by every XMOD wrapper: ``languages``, ``default_language``, ``set_default_language``.

The default lives where transformers keeps it, in ``config.default_language``: it is saved in
``config.json`` and restored on load, so a folder we save works in every stock loader without a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transformers import XmodPreTrainedModel

from xm_integrations.languages.resolution import resolve_language
from xm_integrations.languages.routing import LanguageArg, resolve_input_languages

__all__ = ["XmodLanguageMixin"]


class XmodLanguageMixin:
    """Language API for a wrapper around one XMOD model; the wrapper implements :meth:`_xmod_model`."""

    _xmod_model: Callable[[], XmodPreTrainedModel]  # provided by the wrapper

    @property
    def languages(self) -> tuple[str, ...]:
        """The adapter codes of the loaded checkpoint, in adapter-index order."""
        return tuple(self._xmod_model().config.languages)

    @property
    def default_language(self) -> str | None:
        """The adapter used when no language is given (saved as ``default_language`` in ``config.json``)."""
        return self._xmod_model().config.default_language

    def set_default_language(self, language: str) -> None:
        """Set the default adapter from any code, tag or name (``"fr"``, ``"fr-FR"``, ``"French"``).

        Raises:
            UnknownLanguageError: the checkpoint has no adapter for ``language``.
        """
        model = self._xmod_model()
        XmodPreTrainedModel.set_default_language(model, resolve_language(language, model.config.languages))

    def _resolve_input_languages(
        self, language: LanguageArg, count: int, detect_texts: Callable[[list[int]], Sequence[str]]
    ) -> list[str]:
        """One adapter code per input; ``detect_texts(positions)`` gives the texts to detect ``"auto"`` from."""
        available = self.languages

        def detect(positions: list[int]) -> list[str]:
            from xm_integrations.languages.detection import detect_language

            return list(detect_language(list(detect_texts(positions)), available=available))

        return resolve_input_languages(
            language, count, available=available, default=self.default_language, detect=detect
        )
