"""ColBERT-XM as a drop-in for FlagEmbedding's ``FlagReranker``: late-interaction reranking of (query, passage) pairs.

Pipelines written for ``FlagReranker`` call ``compute_score(pairs, normalize=...)`` and read one float
per pair. :class:`XMColBERTReranker` answers the same call with ColBERT-XM's MaxSim, encoding every
distinct query and passage once (a query reranked against 100 passages is encoded once, not 100
times), so it is a cheap first reranking stage before a cross-encoder such as Mono-XM.

It does not subclass ``FlagReranker``: that class loads a sequence-classification head, and its
multi-device pool pickles the whole reranker into workers that hang the caller when they fail.
FlagEmbedding is therefore not required.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from xm_integrations.engine import UnsetBatchSize
from xm_integrations.errors import ArgumentTypeError
from xm_integrations.languages.mixin import XmodLanguageMixin
from xm_integrations.languages.routing import LanguageArg
from xm_integrations.models.colbert_xm.model import ColBERTXM
from xm_integrations.models.reranking import as_pair_batch, check_pairs, pair_languages
from xm_integrations.scoring.late_interaction import maxsim_pairwise

__all__ = ["XMColBERTReranker"]

logger = logging.getLogger(__name__)


def _first_device(devices: str | int | Sequence[str | int] | None) -> str | None:
    """The one device used, from FlagEmbedding's ``devices`` forms (``"cuda:0"``, ``0``, ``["0", "1"]``)."""
    if devices is None:
        return None
    if isinstance(devices, (str, int)):
        devices = [devices]
    devices = list(devices)
    if not devices:
        return None
    if len(devices) > 1:
        logger.warning(
            "XMColBERTReranker runs on one device; using %s of %s. Encoding is shared across pairs, so one "
            "device usually suffices for reranking.", devices[0], devices,
        )
    device = devices[0]
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        return f"cuda:{device}"
    return str(device)


class XMColBERTReranker(XmodLanguageMixin):
    """A ``FlagReranker``-compatible reranker scoring pairs with ColBERT-XM's MaxSim.

    Accepts ``FlagReranker``'s constructor arguments and ``compute_score`` call, and adds the
    language of :class:`~xm_integrations.ColBERTXM`: ``language=`` on the constructor (the default
    adapter) and on :meth:`compute_score` (one language, one per pair, or ``"auto"``; a pair's query
    and passage go through the same adapter).

    Scores: the raw MaxSim (sum over the query's vectors of the best cosine in the passage,
    ``query_maxlen`` terms, so between ``-query_maxlen`` and ``query_maxlen``); with ``normalize``,
    ``(1 + MaxSim / n_query_vectors) / 2``, the mean best cosine mapped to ``[0, 1]``. Not
    ``FlagReranker``'s sigmoid: a sigmoid of sums of up to 32 cosines would be 1.0 for almost every
    pair. Both orders are the raw score's order.

    Lengths come from the checkpoint (``query_maxlen``, ``doc_maxlen`` in ``artifact.metadata``),
    as in colbert-ai: ``max_length``/``query_max_length`` cannot change them, and a value that would
    is reported once with a warning instead of being silently ignored.

    Example::

        reranker = XMColBERTReranker("antoinelouis/colbert-xm", language="fr")
        reranker.compute_score([("Combien de caféine ?", "Une tasse de thé vert ...")], normalize=True)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike = "antoinelouis/colbert-xm",
        use_fp16: bool = False,
        query_instruction_for_rerank: str | None = None,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: str | None = None,
        passage_instruction_format: str = "{}{}",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        devices: str | int | Sequence[str | int] | None = None,
        batch_size: int = UnsetBatchSize(128),
        query_max_length: int | None = None,
        max_length: int | None = None,
        normalize: bool = False,
        *,
        language: str | None = None,
        model: ColBERTXM | None = None,
        **kwargs: Any,
    ) -> None:
        """Load a ColBERT-XM checkpoint (or wrap an already loaded :class:`ColBERTXM` given as ``model``).

        Args:
            model_name_or_path: A Hub repo id or a local folder (colbert-ai layout or a
                ``ColBERTXM.save`` folder).
            use_fp16: Half precision on an accelerator (ignored on CPU, as in FlagEmbedding);
                MaxSim still accumulates in float32.
            query_instruction_for_rerank, query_instruction_format: As in FlagEmbedding: the query
                becomes ``format.format(instruction, query)``. ColBERT-XM was trained without.
            passage_instruction_for_rerank, passage_instruction_format: The same for passages.
            trust_remote_code, cache_dir: Passed to the loader (``cache_folder``).
            devices: One device, or FlagEmbedding's list (the first is used).
            batch_size: Texts per forward pass, when given; otherwise document batches are cut by
                the token budget of ColBERT-XM's fast path (and queries by stock's 128).
            query_max_length, max_length: Accepted for compatibility; see the class docstring.
            normalize: Default for :meth:`compute_score`'s ``normalize``.
            language: The default adapter, in any form :func:`~xm_integrations.resolve_language`
                accepts.
            model: An already loaded :class:`ColBERTXM` to share (then nothing is loaded).
            **kwargs: Passed to :class:`ColBERTXM` (``revision``, ``local_files_only``, ...).
        """
        device = _first_device(devices)
        if model is None:
            model = ColBERTXM(
                str(model_name_or_path), device=device, trust_remote_code=trust_remote_code, cache_folder=cache_dir,
                **kwargs,
            )
        elif device is not None:
            model.to(device)
        self.model = model
        self.tokenizer = model.tokenizer
        if use_fp16 and model.device.type != "cpu":
            model.half()
        self.use_fp16 = use_fp16 and model.device.type != "cpu"
        self.query_instruction_for_rerank = query_instruction_for_rerank
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_rerank = passage_instruction_for_rerank
        self.passage_instruction_format = passage_instruction_format
        self.batch_size = batch_size
        self.query_max_length = query_max_length
        self.max_length = max_length
        self.normalize = normalize
        self._warn_about_lengths(query_max_length, max_length)
        if language is not None:
            model.set_default_language(language)

    # The language API of ColBERTXM, for code that holds the reranker.
    def _xmod_model(self) -> Any:
        """The XMOD model of the wrapped :class:`ColBERTXM`: the language API is the shared mixin's."""
        return self.model._xmod_model()

    def _warn_about_lengths(self, query_max_length: int | None, max_length: int | None) -> None:
        encoding = self.model.colbert_encoding
        if max_length is not None and max_length < encoding.doc_maxlen:
            logger.warning(
                "max_length=%s is not applied: ColBERT-XM truncates passages to the checkpoint's doc_maxlen=%s, "
                "as colbert-ai does.", max_length, encoding.doc_maxlen,
            )
        if query_max_length is not None and query_max_length != encoding.query_maxlen:
            logger.warning(
                "query_max_length=%s is not applied: ColBERT-XM encodes every query at exactly the checkpoint's "
                "query_maxlen=%s, as colbert-ai does.", query_max_length, encoding.query_maxlen,
            )

    def _instructed(self, text: str, instruction: str | None, template: str) -> str:
        return text if instruction is None else template.format(instruction, text)

    def compute_score(
        self,
        sentence_pairs: Sequence[Sequence[str]] | tuple[str, str],
        batch_size: int | None = None,
        query_max_length: int | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        *,
        language: LanguageArg = None,
        show_progress_bar: bool | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Score (query, passage) pairs, as ``FlagReranker.compute_score`` is called.

        Args:
            sentence_pairs: One ``(query, passage)`` pair or a list of them.
            batch_size: Texts per forward pass (the constructor's by default).
            query_max_length, max_length: Accepted for compatibility (see the class docstring).
            normalize: Map scores to ``[0, 1]`` (see the class docstring); the constructor's
                setting by default.
            language: ``None`` (the default language), one language, a list aligned with the
                pairs, or ``"auto"`` (detected from each passage, or from the query when the passage
                is blank, as for Mono-XM).
            show_progress_bar: Progress bars while encoding; by default when there are more
                distinct texts than one batch.
            **kwargs: FlagEmbedding passes tokenizer options here; ColBERT-XM's tokenization is
                fixed, so any is refused rather than ignored.

        Returns:
            One float per pair, in input order (a list, also for one pair, as FlagEmbedding 1.4).

        Raises:
            TypeError: an input is not a pair of two strings (the message names its index), or
                an unsupported keyword argument.
            ValueError: a list of languages whose length differs from the number of pairs.
            UnknownLanguageError / MissingLanguageError: as for :class:`ColBERTXM`.
        """
        if kwargs:
            raise ArgumentTypeError(
                f"compute_score() got unsupported arguments {sorted(kwargs)}: ColBERT-XM tokenizes exactly as "
                "colbert-ai does, so tokenizer options cannot apply."
            )
        pairs = check_pairs(as_pair_batch(sentence_pairs)[0])  # one pair, a list or a NumPy array, as stock
        if not pairs:
            pair_languages(self.model, pairs, language)  # a misspelt language fails on an empty call too
            return []
        self._warn_about_lengths(query_max_length, max_length)
        batch_size = self.batch_size if batch_size is None else batch_size
        normalize = self.normalize if normalize is None else normalize
        codes = pair_languages(self.model, pairs, language)

        queries = [self._instructed(q, self.query_instruction_for_rerank, self.query_instruction_format) for q, _ in pairs]
        passages = [
            self._instructed(p, self.passage_instruction_for_rerank, self.passage_instruction_format) for _, p in pairs
        ]
        query_vectors = self._encode_unique(queries, codes, "query", batch_size, show_progress_bar)
        passage_vectors = self._encode_unique(passages, codes, "document", batch_size, show_progress_bar)
        scores = maxsim_pairwise(query_vectors, passage_vectors, reduce="mean" if normalize else "sum")
        if normalize:
            scores = (1.0 + scores) / 2.0
        return scores.float().cpu().tolist()

    def _encode_unique(
        self, texts: list[str], codes: list[str], task: str, batch_size: int, show_progress_bar: bool | None
    ) -> list[torch.Tensor]:
        """Encode each distinct (text, language) once; return one tensor per input, shared where equal."""
        index_of: dict[tuple[str, str], int] = {}
        for key in zip(texts, codes):
            index_of.setdefault(key, len(index_of))
        unique = list(index_of)
        if show_progress_bar is None:
            show_progress_bar = len(unique) > batch_size
        encode = self.model.encode_query if task == "query" else self.model.encode_document
        vectors = encode(
            [text for text, _ in unique],
            language=[code for _, code in unique],
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
        return [vectors[index_of[key]] for key in zip(texts, codes)]

    def stop_self_pool(self) -> None:
        """FlagReranker's pool shutdown; there is no pool here."""
