"""Mono-XM (and any XMOD cross-encoder) as a sentence-transformers ``CrossEncoder`` with a language per pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sentence_transformers import CrossEncoder
from sentence_transformers.base.model import BaseModel
from transformers import XmodPreTrainedModel

from xm_integrations.routing import LanguageArg, RoutedPair, RoutedText, route_inputs, routed_lang_ids
from xm_integrations.xmod_language import XmodLanguageMixin, find_xmod_model, install_language_resolution

__all__ = ["MonoXM"]

# Runs of one language are cheaper for XMOD (it runs each adapter once per run of equal ids), so
# inputs are sorted by language first and by length second; lengths stay far below this factor.
_LANGUAGE_SORT_STRIDE = 10**12


class MonoXM(XmodLanguageMixin, CrossEncoder):
    """A ``CrossEncoder`` for XMOD rerankers such as ``antoinelouis/mono-xm``.

    Every stock argument and method works as in ``CrossEncoder``. In addition:

    * ``language=`` on the constructor sets the default adapter from any code, tag or name
      (``"fr"``, ``"fr-FR"``, ``"French"``); without it the checkpoint's ``default_language`` is used.
    * :meth:`predict` and :meth:`rank` take ``language=``: one language for this call, a list with
      one language per pair (each pair runs through its own adapter, inside shared batches), or
      ``"auto"`` to detect each pair's language from its passage (from the query when the passage
      is empty). A per-call language never changes the default, so threads do not interfere.
    * ``model.model.set_default_language("fr_FR")`` (the published model card's line) resolves
      aliases on this instance, without patching transformers.

    Texts longer than the model's limit are truncated by the tokenizer (``truncation=True``,
    longest-first over the pair, to ``max_length``), as in the stock ``CrossEncoder``.

    Example::

        model = MonoXM("antoinelouis/mono-xm", language="fr")
        scores = model.predict([("query", "passage"), ("requête", "passage")], language=["en", "fr"])
    """

    def __init__(self, model_name_or_path: str | None = None, *, language: str | None = None, **kwargs: Any) -> None:
        super().__init__(model_name_or_path, **kwargs)
        install_language_resolution(self._xmod_model())
        if language is not None:
            self.set_default_language(language)

    def _xmod_model(self) -> XmodPreTrainedModel:
        return find_xmod_model(self)

    def predict(self, inputs: Any, *args: Any, language: LanguageArg = None, **kwargs: Any) -> Any:
        """Score (query, passage) pairs, as ``CrossEncoder.predict`` does, with ``language=`` per call or per pair.

        Args:
            inputs: One pair or a list of pairs.
            language: ``None`` (the default language), one language, a list aligned with the
                pairs, or ``"auto"``.
            *args, **kwargs: Everything ``CrossEncoder.predict`` takes (``batch_size``,
                ``activation_fn``, ``pool``, ``device``, ...).

        Raises:
            UnknownLanguageError: a language has no adapter in the checkpoint.
            ValueError: a list of languages whose length differs from the number of pairs.
            TypeError: a pair holds something other than text (the message names its index).
        """
        singular = self.is_singular_input(inputs)
        pairs = [inputs] if singular else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        if not (language is None and pairs and all(_is_routed(pair) for pair in pairs)):
            pairs = self._route_pairs(pairs, language)
        scores = super().predict(pairs, *args, **kwargs)
        return scores[0] if singular else scores

    def rank(
        self, query: str, documents: Sequence[str], *args: Any, language: LanguageArg = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Rank ``documents`` for ``query`` as ``CrossEncoder.rank`` does; ``language`` is per call or per document."""
        documents = list(documents)
        pairs = self._route_pairs([(query, document) for document in documents], language)
        routed_documents = [RoutedText(document, pair.lang_id) for document, pair in zip(documents, pairs)]
        results = super().rank(query, routed_documents, *args, **kwargs)
        for result in results:
            if "text" in result:
                result["text"] = documents[result["corpus_id"]]
        return results

    def _route_pairs(self, pairs: list, language: LanguageArg) -> list[RoutedPair]:
        def passages(positions: list[int]) -> list[str]:
            return [_detection_text(pairs[i]) for i in positions]

        codes = self._resolve_input_languages(language, len(pairs), passages)
        return route_inputs(pairs, codes, self.languages)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Tokenize as ``CrossEncoder`` does and add XMOD's ``lang_ids`` from the routed pairs."""
        features = super().preprocess(inputs, prompt=prompt, **kwargs)
        lang_ids = routed_lang_ids([_pair_lang(pair) for pair in inputs], len(self.languages))
        if lang_ids is not None:
            features["lang_ids"] = lang_ids
        return features

    @staticmethod
    def _input_length(sample: Any) -> int:
        """Sort key: language first, then length, so batches hold long runs of one adapter."""
        lang_id = getattr(_pair_lang(sample), "lang_id", 0)
        return lang_id * _LANGUAGE_SORT_STRIDE + BaseModel._input_length(sample)


class _LangCarrier:
    __slots__ = ("lang_id",)

    def __init__(self, lang_id: int) -> None:
        self.lang_id = lang_id


def _pair_lang(pair: Any) -> object:
    """Whatever carries the pair's language: the pair itself, or its routed passage (from ``rank``)."""
    if isinstance(pair, RoutedPair):
        return pair
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[1], RoutedText):
        return _LangCarrier(pair[1].lang_id)
    return pair


def _is_routed(pair: Any) -> bool:
    return hasattr(_pair_lang(pair), "lang_id")


def _detection_text(pair: Sequence[str]) -> str:
    """The passage, or the query when the passage is empty: passages are longer and identify better."""
    query, passage = pair
    return passage if isinstance(passage, str) and passage.strip() else query

