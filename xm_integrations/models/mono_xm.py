"""Mono-XM (and any XMOD cross-encoder) as a sentence-transformers ``CrossEncoder`` with a language per pair."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder

from xm_integrations.compat.log_filters import without_default_language_snippet_error
from xm_integrations.compat.sentence_transformers import CrossEncoderHooks
from xm_integrations.engine import FastInferenceConfig, UnsetBatchSize, resolve_fast_inference
from xm_integrations.engine.pipeline import pool_chunk_size, score_pairs
from xm_integrations.engine.precision import default_autocast_dtype
from xm_integrations.languages.routing import (
    LanguageArg,
    RoutedPair,
    RoutedText,
    language_major_length,
    routed_lang_ids,
)
from xm_integrations.models.checkpoints import CheckpointFiles, check_cross_encoder_checkpoint
from xm_integrations.models.core import XmodWrapper, drop_unused_none, select_worker_device
from xm_integrations.models.reranking import as_pair_batch, route_pairs
from xm_integrations.xmod.compiled_layers import CompilableXmodMixin

__all__ = ["MonoXM"]

logger = logging.getLogger(__name__)


#: The ``predict`` arguments that the fast path honours; any other keeps the stock path.
_FAST_PATH_ARGUMENTS = frozenset({
    "batch_size", "show_progress_bar", "activation_fn", "apply_softmax", "convert_to_numpy", "convert_to_tensor",
    "device",
})

#: ``predict`` arguments that mean nothing when ``None`` (the fast path takes them as absent).
_UNUSED_WHEN_NONE = frozenset({"pool", "chunk_size", "prompt", "prompt_name"})



class MonoXM(XmodWrapper, CompilableXmodMixin, CrossEncoderHooks, CrossEncoder):
    """A ``CrossEncoder`` for XMOD rerankers such as ``antoinelouis/mono-xm``.

    XMOD runs every input through the adapter of its language, and the published checkpoint has
    no default language, so a stock ``CrossEncoder`` fails with "Input language unknown" (and the
    model card's ``set_default_language("fr_FR")`` fails too: the adapter is called ``fr_XX``).
    This class keeps every stock argument and method and adds the language:

    * ``language=`` on the constructor sets the default adapter from any code, tag or name
      (``"fr"``, ``"fr-FR"``, ``"French"``); without it the checkpoint's ``default_language`` is
      used. :meth:`set_default_language` changes it later; :attr:`default_language` and
      :attr:`languages` read it and the checkpoint's adapters.
    * :meth:`predict` and :meth:`rank` take ``language=``: one language for this call, a list with
      one language per pair (each pair runs through its own adapter, inside shared batches), or
      ``"auto"`` to detect each pair's language from its passage (from the query when the passage
      is blank). A per-call language never changes the default, so concurrent calls do not
      interfere, and it is resolved before any batching or pool dispatch: a bad language fails at
      once, in the calling process.
    * ``model.model.set_default_language("fr_FR")`` (the published model card's line) resolves
      aliases on this instance, without patching transformers' classes.
    * :meth:`save` writes a folder that stock ``CrossEncoder``, ``FlagReranker`` and
      ``AutoModelForSequenceClassification`` load without remote code; the default language is
      kept in ``config.json``.

    Speed: every XMOD layer runs only the adapters present in a batch (transformers runs all 81,
    masked, in every layer; the numbers are the same, and an out-of-range adapter id is an error).
    :meth:`predict` also takes the fast path of :mod:`xm_integrations.engine.pipeline`
    (``fast_inference=True``, the default, on every device): pairs tokenized once, batches cut by
    a budget of padded tokens (:class:`~xm_integrations.FastInferenceConfig` ``max_batch_tokens``;
    a ``batch_size`` given by the caller also caps the pairs per batch, as in stock) over pairs
    sorted by length, each batch's rows grouped by language; on CUDA the matrix products run in float16 under autocast
    with float32 weights, accumulation and scores (on CPU in float32). A model loaded in half
    precision (``model_kwargs={"dtype": torch.float16}``) runs in it without autocast, with the
    score error of ``FlagReranker(use_fp16=True)``.
    ``benchmarks/NOTES.md`` has the speed and the score error against float32.

    Truncation: a pair longer than :attr:`max_seq_length` tokens (special tokens included) is cut
    by the tokenizer ``longest_first``: tokens are removed one at a time from whichever of query
    and passage is longer at that moment, from the end. :attr:`max_seq_length` is the tokenizer's
    ``model_max_length``, capped at the 512 positions an XMOD model can embed (514 position
    embeddings, numbered from ``pad_token_id + 1``).

    Example::

        model = MonoXM("antoinelouis/mono-xm", language="fr")
        scores = model.predict([("query", "passage"), ("requête", "passage")], language=["en", "fr"])
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        language: str | None = None,
        fast_inference: bool | FastInferenceConfig = True,
        **kwargs: Any,
    ) -> None:
        """Load a checkpoint as ``CrossEncoder`` does.

        Args:
            model_name_or_path: A Hub repo id or a local folder, as for ``CrossEncoder``.
            language: The default adapter, in any form :func:`~xm_integrations.resolve_language`
                accepts; the checkpoint's ``default_language`` when omitted.
            fast_inference: ``True`` (default): :meth:`predict` takes the fast path where the
                call's arguments allow it (fp16 autocast on CUDA, float32 on CPU); a
                :class:`~xm_integrations.FastInferenceConfig` takes it with those settings (e.g.
                ``FastInferenceConfig(max_batch_tokens=8192)`` to cap a forward pass's memory);
                ``False``: stock batching (the adapters still run only where present).
            **kwargs: Every keyword argument of ``CrossEncoder`` (``device``, ``max_length``,
                ``model_kwargs``, ``config_kwargs``, ...).

        Raises:
            TypeError: the checkpoint is not an XMOD model.
            CheckpointError: the checkpoint cannot score pairs: a multi-vector (ColBERT-XM) model, no
                classification head, or a corrupt file (the message names the file).
            MissingCheckpointFileError: ``config.json``, the safetensors weights or the tokenizer
                files are missing (a ``FileNotFoundError``).
            UnknownLanguageError: the checkpoint has no adapter for ``language``.
        """
        resolve_fast_inference(fast_inference)  # a wrong type fails before the load
        if model_name_or_path is not None:
            check_cross_encoder_checkpoint(CheckpointFiles.from_model_kwargs(model_name_or_path, kwargs), "MonoXM")
        super().__init__(model_name_or_path, **kwargs)
        self._attach_xmod(language=language, fast_inference=fast_inference)
        self.max_seq_length = self._capped_length(self.max_seq_length, kwargs.get("max_length"))

    def predict(self, inputs: Any, *args: Any, language: LanguageArg = None, **kwargs: Any) -> Any:
        """Score (query, passage) pairs as ``CrossEncoder.predict`` does, with ``language=`` per call or per pair.

        Args:
            inputs: One pair or a sequence of pairs; every query and passage a ``str`` (empty
                strings are scored).
            language: ``None`` (the default language), one language for every pair, a list
                aligned with the pairs (entries may be ``None`` or ``"auto"``), or ``"auto"``.
            *args, **kwargs: Everything ``CrossEncoder.predict`` takes (``batch_size``,
                ``activation_fn``, ``pool``, ``device``, ...). With ``pool=`` or a list of devices,
                every pair carries its adapter into the worker processes.

        Returns:
            What ``CrossEncoder.predict`` returns: one score for one pair, otherwise one per
            pair, in input order (an empty array for no pairs).

        Raises:
            UnknownLanguageError: a language has no adapter in the checkpoint.
            MissingLanguageError: no language given and the checkpoint has no default.
            ValueError: a list of languages whose length differs from the number of pairs.
            TypeError: an input is not a pair of two strings (the message names its index).
        """
        pairs, singular = as_pair_batch(inputs)
        routed = route_pairs(self, [_carried_language(pair) for pair in pairs], language)
        if not args:  # stock's default, marked as not given: the fast path then cuts by tokens alone
            kwargs.setdefault("batch_size", UnsetBatchSize(32))
        # Stock rank() passes pool=None, prompt=None, ... explicitly: None there means "not used".
        fast_kwargs = drop_unused_none(kwargs, _UNUSED_WHEN_NONE)
        if args or not self._takes_fast_path(fast_kwargs):
            scores = super().predict(routed, *args, **kwargs)
        else:
            scores = self._predict_fast(routed, **fast_kwargs)
        return scores[0] if singular else scores

    def _takes_fast_path(self, kwargs: dict[str, Any]) -> bool:
        """Whether :meth:`predict` with these arguments runs :func:`~xm_integrations.engine.pipeline.score_pairs`.

        Only for what the fast path reproduces: one process on one device, no prompt, no
        per-call processing or forward arguments, and a model that is one XMOD ``Transformer``.
        Pools take it inside each worker, on its device: the worker's scoring step goes through
        :meth:`inference_hook`, which asks this same question.
        """
        return len(self) == 1 and self._fast_path_allowed(kwargs, _FAST_PATH_ARGUMENTS, kwargs.get("device"))

    @torch.inference_mode()
    def _predict_fast(
        self,
        pairs: list[RoutedPair],
        *,
        batch_size: int = UnsetBatchSize(32),
        show_progress_bar: bool | None = None,
        activation_fn: Any = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | torch.device | None = None,
    ) -> Any:
        """``CrossEncoder.predict`` for routed pairs through the fast path, same outputs and post-processing.

        A ``batch_size`` the caller gave caps the pairs per forward pass, as in stock; otherwise the
        token budget of :attr:`fast_inference` alone cuts the batches.
        """
        engine = self._fast_config().engine_kwargs(batch_size)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        if device is not None:
            self.to(device)
        self.eval()
        device = self.device
        lang_ids = np.fromiter((pair.lang_id for pair in pairs), dtype=np.int64, count=len(pairs))
        xmod = self._xmod_model()
        scores = score_pairs(
            xmod, self.tokenizer, pairs, lang_ids, max_length=self.max_seq_length,
            autocast_dtype=default_autocast_dtype(device, xmod.dtype), show_progress_bar=show_progress_bar, **engine,
        )
        activation_fn = activation_fn or self.activation_fn
        if activation_fn is not None:
            scores = activation_fn(scores)
        if self.num_labels == 1 and scores.ndim > 1:
            scores = scores.squeeze(-1)
        if apply_softmax and scores.ndim > 1:
            scores = torch.nn.functional.softmax(scores, dim=1)
        if convert_to_tensor:
            return scores
        if convert_to_numpy:
            return scores.cpu().numpy() if len(scores) else np.array([])
        return list(scores)

    def inference_hook(self, inputs: list[Any], *, prompt: str | None, batch_size: int, show_progress_bar: bool,
                       activation_fn: Any, apply_softmax: bool | None, device: str | torch.device | None = None,
                       forward_kwargs: dict[str, Any]) -> torch.Tensor | None:
        """A pool worker's scoring step through the fast path, or ``None`` for the stock step.

        Called by :class:`~xm_integrations.compat.sentence_transformers.CrossEncoderHooks`.

        Pool workers call that step directly instead of :meth:`predict`, so without this every
        worker ran the stock batching. Routed pairs with no prompt and no forward arguments take
        :meth:`_predict_fast`.
        """
        select_worker_device(device)
        if (prompt is None and not forward_kwargs and self._takes_fast_path({"device": device})
                and all(isinstance(pair, RoutedPair) for pair in inputs)):
            # predict() has resolved the activation already: None here means none, not the model's.
            return self._predict_fast(inputs, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                      activation_fn=activation_fn or torch.nn.Identity(), apply_softmax=apply_softmax,
                                      convert_to_tensor=True, device=device)
        return None

    def rank(
        self, query: str, documents: Sequence[str], *args: Any, language: LanguageArg = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Rank ``documents`` for ``query`` as ``CrossEncoder.rank`` does.

        Args:
            query: The query.
            documents: The passages to rank.
            language: As for :meth:`predict`; a list is aligned with ``documents``, and
                ``"auto"`` detects each document's language.
            *args, **kwargs: Everything ``CrossEncoder.rank`` takes (``top_k``,
                ``return_documents``, ``batch_size``, ``pool``, ...).

        Returns:
            ``[{"corpus_id": i, "score": s, ("text": documents[i])}, ...]``, best first.
        """
        documents = list(documents)
        if len(args) < 3:  # stock rank() passes its batch_size=32 on: mark it as not given by the caller
            kwargs.setdefault("batch_size", UnsetBatchSize(32))
        routed = route_pairs(self, [(query, document) for document in documents], language)
        # Stock rank() builds its own pairs from the documents: each document carries its adapter.
        carried = [RoutedText(document, pair.lang_id) for document, pair in zip(documents, routed)]
        results = super().rank(query, carried, *args, **kwargs)
        for result in results:
            if "text" in result:
                result["text"] = documents[result["corpus_id"]]
        return results

    def save(self, path: str, *args: Any, **kwargs: Any) -> None:
        """Save as ``CrossEncoder`` does; the folder loads in stock ``CrossEncoder`` and ``FlagReranker``.

        The default language is saved as ``default_language`` in ``config.json``. Without one, stock
        loaders fail with "Input language unknown": a warning says so (instead of the model card's
        own error, which cannot compute its usage snippet then).
        """
        if self.default_language is None:
            logger.warning(
                "Saving a Mono-XM without default_language: stock CrossEncoder and FlagReranker will fail to score "
                "('Input language unknown'). Call set_default_language('fr') (any code) before save() to avoid that."
            )
        with without_default_language_snippet_error(self.default_language is not None):
            super().save(path, *args, **kwargs)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Tokenize as ``CrossEncoder`` does and add XMOD's ``lang_ids``, each pair's from its texts, as in :meth:`predict`.

        A pair's adapter is the :class:`~xm_integrations.languages.routing.RoutedPair`'s, else its
        passage's when the passage is a :class:`~xm_integrations.languages.routing.RoutedText`
        (stock cross-encoder losses zip the columns of routed texts into plain tuples before
        calling this; with in-batch negatives a pair's adapter is its passage's row's). Pairs
        without an adapter (the stock data collator) get no ``lang_ids``, so XMOD uses the
        checkpoint's default language for them, as in a stock ``CrossEncoder``.
        """
        features = super().preprocess(inputs, prompt=prompt, **kwargs)
        lang_ids = routed_lang_ids([_carried_language(pair) for pair in inputs], len(self.languages))
        if lang_ids is not None and features:
            features["lang_ids"] = lang_ids
        return features

    def multi_process_hook(self, stock: Callable[..., Any], inputs: Sequence[Any], *, pool: dict[str, Any] | None = None,
                           device: Any = None, chunk_size: int | None = None, **kwargs: Any) -> Any:
        """Stock multi-process scoring with two large chunks per worker.

        The pairs arrive here already routed (languages resolved and checked in this process), so
        workers only score them. Without ``chunk_size``, each worker gets two chunks
        (:func:`~xm_integrations.engine.pipeline.pool_chunk_size`): stock's ten small chunks per
        worker made two H200s slower than one. Dead or failing workers are stock's to report
        (sentence-transformers >= 6.2).
        """
        if not inputs:
            return stock(inputs, pool=pool, device=device, chunk_size=chunk_size, **kwargs)
        created = pool is None and isinstance(device, list) and len(device) > 0
        if created:
            pool = self.start_multi_process_pool(device)
        if chunk_size is None and pool is not None:
            chunk_size = pool_chunk_size(len(inputs), len(pool["processes"]))
        try:
            return stock(inputs, pool=pool, device=device, chunk_size=chunk_size, **kwargs)
        finally:
            if created:
                self.stop_multi_process_pool(pool)

    #: Stock batching sorts inputs by adapter first, then length (see ``language_major_length``).
    sort_key = staticmethod(language_major_length)


def _carried_language(pair: Any) -> Any:
    """A ``[query, document]`` pair built by stock ``rank`` from a routed document, as a routed pair."""
    if (
        not isinstance(pair, RoutedPair)
        and isinstance(pair, (list, tuple))
        and len(pair) == 2
        and isinstance(pair[1], RoutedText)
    ):
        return RoutedPair((pair[0], str(pair[1])), pair[1].lang_id)
    return pair
