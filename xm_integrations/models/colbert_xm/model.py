"""ColBERT-XM (and any XMOD ``HF_ColBERT`` checkpoint) as a sentence-transformers ``MultiVectorEncoder``.

Why not the stock ``MultiVectorEncoder("antoinelouis/colbert-xm")``? It loads the checkpoint but does
not encode as colbert-ai 0.2.22 did when ColBERT-XM was trained (see ``docs/colbert_xm.md`` for the
measured difference):

* colbert-ai inserts the marker *id* of ``"[unused0]"`` / ``"[unused1]"`` at position 1. Those names
  are not in XLM-R's vocabulary, so the id is ``<unk>`` (3); the stock loader prepends the *text*
  ``"[unused0] "`` instead, which becomes five ordinary word pieces.
* colbert-ai's punctuation skiplist is ``tokenizer.encode(symbol)[0]`` for each character of
  ``string.punctuation``: on a sentencepiece vocabulary these are word-initial pieces (``▁.``) or
  the bare ``▁``. The stock loader looks the bare characters up (``.``), a different set of ids.

:class:`ColBERTXM` tokenizes exactly as colbert-ai does (marker ids inserted, queries padded with
``<mask>`` to ``query_maxlen``, documents truncated to ``doc_maxlen``, pads and skiplist ids dropped
from documents), adds XMOD's per-input ``lang_ids``, and otherwise runs the stock modules
(``Transformer``, ``Dense``, ``MultiVectorMask``, ``Normalize``). Its saved folder therefore holds only
stock module types, configured so that a stock ``MultiVectorEncoder`` reproduces the same vectors:
the marker becomes the one-token prompt ``"<unk>"`` (a special token, so the tokenizer never splits
it) and the skiplist is stored as the token strings of colbert-ai's ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from torch import Tensor

from xm_integrations.compat.log_filters import (
    ExpectedColBERTLoadReport,
    log_filter,
    without_default_language_snippet_error,
)
from xm_integrations.compat.sentence_transformers import MultiVectorEncoderHooks, placement_is_delegated
from xm_integrations.engine import FastInferenceConfig, UnsetBatchSize, resolve_fast_inference
from xm_integrations.errors import ArgumentTypeError, CheckpointError, InvalidArgumentError
from xm_integrations.languages.routing import (
    LanguageArg,
    MissingLanguageError,
    RoutedText,
    language_major_length,
    route_inputs,
    routed_lang_ids,
)
from xm_integrations.models.checkpoints import CheckpointFiles
from xm_integrations.models.colbert_xm.checkpoint import (
    COLBERT_AI_DEFAULTS,
    configure_from_colbert_metadata,
    inspect_colbert_checkpoint,
    read_encoding,
)
from xm_integrations.models.colbert_xm.head import encode_documents_fast, fast_head_parts
from xm_integrations.models.colbert_xm.pool import call_chunk_size, worker_step
from xm_integrations.models.colbert_xm.tokenization import (
    ColBERTEncoding,
    colbert_skiplist_ids,
    stock_tokenization_differences,
    tokenize_documents,
    tokenize_queries,
)
from xm_integrations.models.core import XmodWrapper, drop_unused_none
from xm_integrations.scoring.stock_arguments import stock_similarity
from xm_integrations.xmod.compiled_layers import CompilableXmodMixin

__all__ = [
    "COLBERT_AI_DEFAULTS",
    "CheckpointError",
    "ColBERTEncoding",
    "ColBERTXM",
    "colbert_skiplist_ids",
    "tokenize_documents",
    "tokenize_queries",
]

logger = logging.getLogger(__name__)

#: The ``encode`` arguments that the fast document path honours; any other keeps the stock path.
#: ``convert_to_tensor`` is not among them: stock ``MultiVectorEncoder`` defines its behaviour (an
#: error in sentence-transformers 6.2), so it always goes there.
_FAST_PATH_ARGUMENTS = frozenset({
    "batch_size", "show_progress_bar", "convert_to_numpy", "device", "task", "prompt", "prompt_name",
    "output_value", "normalize_embeddings", "truncate_dim",
})

#: ``encode`` arguments that mean nothing when ``None`` (the fast path takes them as absent).
#: sentence-transformers >= 6.3 passes ``truncate_dim=None`` from ``encode_document`` explicitly.
_UNUSED_WHEN_NONE = frozenset({"pool", "chunk_size", "token_pooling", "truncate_dim"})



_UNSET: Any = object()


class ColBERTXM(XmodWrapper, CompilableXmodMixin, MultiVectorEncoderHooks, MultiVectorEncoder):
    """A ``MultiVectorEncoder`` for ColBERT-XM (``antoinelouis/colbert-xm``) that encodes as colbert-ai 0.2.22.

    Loads colbert-ai ``HF_ColBERT`` checkpoints as they are on the Hub (``config.json``,
    ``model.safetensors`` with ``roberta.*`` and ``linear.weight``, ``artifact.metadata``, tokenizer)
    and folders written by :meth:`save`. Every stock argument and method works as in
    ``MultiVectorEncoder``. In addition:

    * queries and documents are tokenized exactly as colbert-ai does (see the module docstring);
      vectors equal colbert-ai's ``Checkpoint.queryFromText`` / ``docFromText``;
    * ``language=`` on the constructor sets the default adapter from any code, tag or name;
      :meth:`encode`, :meth:`encode_query`, :meth:`encode_document` and :meth:`rank` take
      ``language=``: one language, a list with one language per input (mixed languages share
      batches and give exactly what separate calls give), or ``"auto"`` to detect each input's
      language. A per-call language never changes the default, so threads do not interfere;
    * :meth:`similarity`, :meth:`similarity_pairwise` and :meth:`rank` score with MaxSim
      (:func:`xm_integrations.maxsim`), in float32;
    * :meth:`save` writes only stock module types: a stock ``MultiVectorEncoder`` loads the folder
      without remote code and gives the same vectors for the saved default language.

    Speed: every XMOD layer runs only the adapters present in a batch (transformers runs all 81,
    masked, in every layer; the numbers are the same, and an out-of-range adapter id is an error).
    Document encoding (:meth:`encode_document`, or :meth:`encode` with ``task="document"``) also
    takes the fast path of :mod:`xm_integrations.engine.pipeline` (``fast_inference=True``, the
    default, on every device) when called with only ``batch_size``, ``show_progress_bar``,
    ``convert_to_numpy``, ``device`` and ``truncate_dim`` (and the document marker prompt):
    documents tokenized once, batches cut by a budget of padded tokens (a ``batch_size`` given by
    the caller also caps the documents per batch, as in stock) over documents sorted by length,
    each batch's rows grouped by language. On CUDA, float32 weights run under fp16 autocast there,
    as colbert-ai itself encodes on a GPU (its ``Checkpoint`` wraps ``doc()`` in
    ``torch.cuda.amp.autocast``): vectors within about 1e-3 of the float32 ones, returned in the
    model's dtype; on CPU, or with a half-precision model, it runs in the model's dtype without
    autocast. Each document gets a compact tensor of its own (views into one tensor per batch
    with ``FastInferenceConfig(share_batch_storage=True)``). Queries, pools and any other argument
    take the stock path.

    Example::

        model = ColBERTXM("antoinelouis/colbert-xm", language="fr")
        queries = model.encode_query(["Combien de caféine dans le thé vert ?"])
        documents = model.encode_document(passages, language="auto")
        scores = model.similarity(queries, documents)
        model.rank("Was ist Photosynthese?", passages, language="auto", top_k=3)

    Raises (on load):
        FileNotFoundError: ``artifact.metadata``, ``config.json`` or ``model.safetensors`` is missing
            (the message names the file).
        CheckpointError: one of them is corrupt or inconsistent (the message names the file).
    """

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, *, language: str | None = None,
                 fast_inference: bool | FastInferenceConfig = True, **kwargs: Any) -> None:
        """Load a checkpoint, validating its files first so that a broken one fails naming the file.

        Args:
            model_name_or_path: A Hub repo id or a local folder: colbert-ai's ``HF_ColBERT`` layout,
                or a folder saved by :meth:`save` (or any stock ``MultiVectorEncoder`` save of an
                XMOD model with fixed query expansion).
            language: The default adapter, in any form :func:`~xm_integrations.resolve_language`
                accepts; the checkpoint's ``default_language`` when omitted.
            fast_inference: ``True`` (default): document encoding takes the fast path where the
                call's arguments allow it (fp16 autocast on CUDA, as colbert-ai on a GPU; float32
                on CPU); a :class:`~xm_integrations.FastInferenceConfig` takes it with those
                settings (``max_batch_tokens`` caps a forward pass's memory, ``share_batch_storage``
                returns views instead of compact tensors); ``False``: stock batching, in the model's
                dtype (the adapters still run only where present).
            **kwargs: Every keyword argument of ``MultiVectorEncoder`` (``device``, ``revision``,
                ``cache_folder``, ``model_kwargs``, ...).
        """
        resolve_fast_inference(fast_inference)  # a wrong type fails before the load
        source = None
        if model_name_or_path is not None:
            model_name_or_path = str(model_name_or_path)
            files = CheckpointFiles.from_model_kwargs(model_name_or_path, kwargs)
            source = inspect_colbert_checkpoint(files)
        colbert_ai = source is not None and source.kind == "colbert-ai"
        with log_filter("transformers.modeling_utils", ExpectedColBERTLoadReport() if colbert_ai else None):
            super().__init__(model_name_or_path, **kwargs)
        if source is not None and source.metadata is not None:
            self._configure_from_colbert_metadata({**COLBERT_AI_DEFAULTS, **_non_null(source.metadata)})
        self.colbert_encoding = self._read_encoding()
        self._attach_xmod(language=language, fast_inference=fast_inference)

    # -- configuration -----------------------------------------------------------------------------

    def _transformer(self) -> Transformer:
        first = self[0]
        if not isinstance(first, Transformer):
            raise ArgumentTypeError(f"ColBERTXM needs a sentence-transformers Transformer as first module, got {type(first).__name__}.")
        return first

    def _multi_vector_mask(self) -> MultiVectorMask:
        for module in self:
            if isinstance(module, MultiVectorMask):
                return module
        raise ArgumentTypeError("ColBERTXM needs a MultiVectorMask module (it drops pads and punctuation from documents).")

    def _configure_from_colbert_metadata(self, metadata: dict[str, Any]) -> None:
        configure_from_colbert_metadata(self, metadata, self._transformer(), self._multi_vector_mask())

    def _read_encoding(self) -> ColBERTEncoding:
        return read_encoding(self, self._transformer())

    # -- encoding ----------------------------------------------------------------------------------

    def encode(self, inputs: Any, *args: Any, language: LanguageArg = None, **kwargs: Any) -> Any:
        """Encode texts as ``MultiVectorEncoder.encode`` does, each through its language's adapter.

        Args:
            inputs: One text or a list of texts.
            language: ``None`` (the default language), one language for every input, a list with
                one language per input, or ``"auto"`` (detected per input).
            *args, **kwargs: Everything ``MultiVectorEncoder.encode`` takes (``batch_size``,
                ``task``, ``convert_to_numpy``, ``show_progress_bar``, ``pool``, ``device``, ...).
                Without ``task`` texts are tokenized and masked exactly as stock
                ``MultiVectorEncoder.encode`` does (no marker inserted); use :meth:`encode_document`
                and :meth:`encode_query` for colbert-ai's encoding.

        Returns:
            One ``(tokens, dim)`` tensor per text (every ``query_maxlen`` position for queries; the
            kept tokens for documents), or one tensor for a single text.

        Raises:
            TypeError: an input is not a str (the message names its index).
            ValueError: a list of languages whose length differs from the number of inputs.
            UnknownLanguageError: a language has no adapter in the checkpoint.
            MissingLanguageError: no language given and the checkpoint has no default language.
        """
        singular = self.is_singular_input(inputs)
        items = [inputs] if singular else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        if not (language is None and items and all(isinstance(item, RoutedText) for item in items)):
            items = self._route_texts(items, language)
        # Stock encode_document() passes pool=None, chunk_size=None, ... explicitly: None there means "not used".
        fast_kwargs = drop_unused_none(kwargs, _UNUSED_WHEN_NONE)
        if not args and self._takes_fast_path(fast_kwargs):
            result = self._encode_documents_fast(items, **fast_kwargs)
        else:
            result = super().encode(items, *args, **kwargs)
        return result[0] if singular else result

    def _takes_fast_path(self, kwargs: dict[str, Any]) -> bool:
        """Whether :meth:`encode` with these arguments runs :func:`~xm_integrations.engine.pipeline.encode_texts`.

        Only for what the fast path reproduces: documents (``task`` ``"document"`` or none), one
        process on one device, raw token embeddings without extra normalisation, no prompt other
        than the document marker (inserted as an id either way), and a model made of the stock
        ``Transformer, Dense, MultiVectorMask, Normalize`` as ColBERTXM builds it, without token
        pooling; ``truncate_dim`` (the call's, else the model's) is reproduced. Pools take it inside
        each worker (the worker calls :meth:`encode` on its device).
        """
        if kwargs.get("task") != "document" or kwargs.get("convert_to_numpy") not in (None, False, True):
            return False
        if kwargs.get("output_value", "token_embeddings") != "token_embeddings" or kwargs.get("normalize_embeddings"):
            return False
        if not self._fast_prompt_is_marker(kwargs.get("prompt"), kwargs.get("prompt_name")):
            return False
        # The model's default pooler (sentence-transformers >= 6.3), which stock encode applies.
        if getattr(self, "token_pooling", None) is not None:
            return False
        if placement_is_delegated(self) or self._fast_document_head_parts() is None:
            return False
        return self._fast_path_allowed(kwargs, _FAST_PATH_ARGUMENTS, kwargs.get("device"))

    def _fast_prompt_is_marker(self, prompt: str | None, prompt_name: str | None) -> bool:
        """Whether the prompt that stock ``encode`` would resolve leaves the text unchanged in :meth:`preprocess`."""
        if prompt is not None and prompt_name is not None:
            return False  # stock warns and uses the prompt: leave that to it
        if prompt is None:
            name = prompt_name if prompt_name is not None else self.default_prompt_name
            if name is None:
                return True
            if name not in self.prompts:
                return prompt_name is None  # a missing explicit name is stock's error to raise
            prompt = self.prompts[name]
        return not prompt or prompt.strip() in self._marker_tokens()

    def _fast_document_head_parts(self) -> tuple[Tensor, Tensor | None] | None:
        """The projection weight and skiplist ids the fast head needs; ``None`` when it cannot reproduce this pipeline."""
        return fast_head_parts(list(self))

    def _encode_documents_fast(self, texts: list[RoutedText], **kwargs: Any) -> list[Any]:
        """Stock ``encode`` of routed documents through the fast path (:func:`.head.encode_documents_fast`)."""
        return encode_documents_fast(self, texts, **kwargs)

    def inference_hook(self, inputs: list[Any], **kwargs: Any) -> list[Tensor] | None:
        """A pool worker's step (stock ``_inference``) through the fast path, or ``None``: :func:`.pool.worker_step`."""
        return worker_step(self, inputs, **kwargs)

    def multi_process_hook(self, stock: Any, inputs: Any, *, pool: dict[str, Any] | None = None, device: Any = None,
                           chunk_size: int | None = None, **kwargs: Any) -> Any:
        """Stock multi-process encoding, two large chunks per worker unless ``chunk_size`` is given (:mod:`.pool`)."""
        return stock(inputs, pool=pool, device=device, chunk_size=call_chunk_size(inputs, pool, device, chunk_size),
                     **kwargs)

    def encode_query(self, inputs: Any, *args: Any, language: LanguageArg = None, **kwargs: Any) -> Any:
        """Encode queries (``query_maxlen`` vectors each, ``<mask>`` augmentation included); see :meth:`encode`."""
        return super().encode_query(inputs, *args, language=language, **kwargs)

    def encode_document(self, inputs: Any, *args: Any, language: LanguageArg = None, **kwargs: Any) -> Any:
        """Encode documents as colbert-ai does (marker inserted; pads and colbert-ai's punctuation skiplist dropped).

        Arguments as for stock ``encode_document``, plus ``language=`` (see :meth:`encode`). A
        ``batch_size`` given by the caller caps the documents per forward pass, as in stock;
        without one the fast path cuts batches by its token budget alone.
        """
        if len(args) < 3:  # stock passes its batch_size=32 on: mark it as not given by the caller
            kwargs.setdefault("batch_size", UnsetBatchSize(32))
        return super().encode_document(inputs, *args, language=language, **kwargs)

    def _route_texts(self, texts: list[Any], language: LanguageArg) -> list[RoutedText]:
        codes = self._resolve_input_languages(language, len(texts), lambda positions: [texts[i] for i in positions])
        return route_inputs(texts, codes, self.languages)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Tokenize a batch as colbert-ai does and add XMOD's ``lang_ids`` from the routed inputs.

        ``task="query"`` gives colbert-ai's query tokenization, ``task="document"`` its document
        tokenization; no task (a plain :meth:`encode`) tokenizes as the stock ``MultiVectorEncoder``
        does on this model, so both give the same vectors from the same folder. The marker
        prompts (``self.prompts``) are inserted as ids, never as text; any other ``prompt`` is
        prepended to the text, after the marker.
        """
        if not inputs:
            return {}
        task = kwargs.get("task")
        if task is None:
            # Plain encode(): what stock MultiVectorEncoder.encode() does on this model (no marker inserted).
            features = super().preprocess([str(text) for text in inputs], prompt=prompt, **kwargs)
            return self._with_lang_ids(features, inputs)
        kwargs.pop("task")
        if kwargs.get("processing_kwargs"):
            raise InvalidArgumentError("ColBERTXM tokenizes exactly as colbert-ai does; processing_kwargs cannot change that.")
        texts = [str(text) for text in inputs]
        if prompt and prompt.strip() not in self._marker_tokens():
            texts = [prompt + text for text in texts]
        tokenize = tokenize_queries if task == "query" else tokenize_documents
        features: dict[str, Any] = tokenize(self.tokenizer, texts, self.colbert_encoding)
        features["modality"] = "text"
        return self._with_lang_ids(features, inputs)

    def _with_lang_ids(self, features: dict[str, Any], inputs: Sequence[Any]) -> dict[str, Any]:
        lang_ids = routed_lang_ids(inputs, len(self.languages))
        if lang_ids is not None:
            features["lang_ids"] = lang_ids
        return features

    def _marker_tokens(self) -> set[str]:
        encoding = self.colbert_encoding
        return set(self.tokenizer.convert_ids_to_tokens([encoding.query_marker_id, encoding.doc_marker_id]))

    #: Stock batching sorts inputs by adapter first, then length (see ``language_major_length``).
    sort_key = staticmethod(language_major_length)

    # -- scoring -----------------------------------------------------------------------------------

    def similarity(self, embeddings1: Any, embeddings2: Any, **kwargs: Any) -> Tensor:
        """MaxSim of every query against every document, ``(n_queries, n_documents)``, as stock ``similarity``.

        Args:
            embeddings1: Query embeddings: a list of ``(tokens, dim)`` tensors or arrays, a padded
                3-D tensor, or a single 2-D tensor (one query).
            embeddings2: Document embeddings, in the same forms.
            **kwargs: What stock ``MultiVectorEncoder.similarity`` takes, with its meaning:
                ``a_mask`` / ``b_mask`` (padded inputs; without one, all-zero rows are padding, as
                in stock), ``chunk_elements``, ``device`` (where to score; the result stays on the
                documents' device), ``length_normalize`` (default: True when
                ``similarity_fn_name`` is ``"meanmaxsim"``); and those of
                :func:`xm_integrations.maxsim` (``query_mask``, ``document_mask``, ``chunk_size``,
                ``memory_budget``, ...).

        Returns:
            float32 scores on the documents' device; a document without real tokens scores
            ``-1e9``, as in stock.
        """
        return stock_similarity(embeddings1, embeddings2, pairwise=False,
                                length_normalize=self._length_normalize(kwargs.pop("length_normalize", None)), **kwargs)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any, **kwargs: Any) -> Tensor:
        """MaxSim of query ``i`` against document ``i``, ``(n,)``; arguments and semantics as in :meth:`similarity`."""
        return stock_similarity(embeddings1, embeddings2, pairwise=True,
                                length_normalize=self._length_normalize(kwargs.pop("length_normalize", None)), **kwargs)

    def _length_normalize(self, length_normalize: bool | None) -> bool:
        if length_normalize is None:
            return self.similarity_fn_name == "meanmaxsim"
        return bool(length_normalize)

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = UnsetBatchSize(32),
        show_progress_bar: bool | None = None,
        language: LanguageArg = None,
        query_language: str | None = _UNSET,
    ) -> list[dict[str, Any]]:
        """Rank ``documents`` for ``query`` by MaxSim, in sentence-transformers' ranking format.

        Args:
            query: The query text.
            documents: The texts to rank.
            top_k: Return only the best ``top_k`` (all when None).
            return_documents: Add each document's text under ``"text"``.
            batch_size, show_progress_bar: As in :meth:`encode`.
            language: For the documents: ``None`` (default language), one language, a list with
                one language per document, or ``"auto"``.
            query_language: The query's language. By default the same as ``language`` when that is
                one language or ``"auto"`` (then detected from the query itself), and the default
                language when ``language`` is a list.

        Returns:
            ``[{"corpus_id": int, "score": float, ("text": str)}, ...]``, best first; equal scores
            keep corpus order. An empty ``documents`` gives ``[]``.

        Raises:
            TypeError: the query or a document is not a str (documents are named by index).
            ValueError: the query is empty or whitespace only (its vectors would be ``<mask>``
                padding alone, scoring noise), or ``top_k`` is not positive.
        """
        if not isinstance(query, str):
            raise ArgumentTypeError(f"query must be a str, got {type(query).__name__} ({query!r}).")
        if not query.strip():
            raise InvalidArgumentError("query is empty: ColBERT-XM would score documents against <mask> padding alone.")
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive integer or None, got {top_k}.")
        documents = list(documents)
        if not documents:
            return []
        if query_language is _UNSET:
            query_language = language if language is None or isinstance(language, str) else None
            if query_language is None and not (language is None or isinstance(language, str)) and (
                self.default_language is None
            ):
                raise MissingLanguageError(
                    "rank() got one language per document but no query_language, and the checkpoint has no "
                    "default_language: pass query_language='fr' (or 'auto')."
                )
        options = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
        document_embeddings = self.encode_document(documents, language=language, **options)
        query_embeddings = self.encode_query([query], language=query_language, batch_size=1)
        scores = self.similarity(query_embeddings, document_embeddings)[0].float().cpu()
        order = torch.sort(scores, descending=True, stable=True).indices[:top_k].tolist()
        results: list[dict[str, Any]] = []
        for corpus_id in order:
            result: dict[str, Any] = {"corpus_id": corpus_id, "score": float(scores[corpus_id])}
            if return_documents:
                result["text"] = documents[corpus_id]
            results.append(result)
        return results

    # -- saving ------------------------------------------------------------------------------------

    def save(self, path: str, *args: Any, **kwargs: Any) -> None:
        """Save as ``MultiVectorEncoder`` does, with stock module types only.

        A stock ``MultiVectorEncoder(path)`` loads the folder without remote code and reproduces
        this model's vectors for the default language (saved as ``default_language`` in
        ``config.json``; set one first, or stock XMOD forward fails with "Input language unknown").
        Per-call languages are this class's addition. A warning is logged if this tokenizer would
        make the stock text-prompt marker differ from colbert-ai's inserted id.
        """
        if self.default_language is None:
            logger.warning(
                "Saving a ColBERT-XM without default_language: a stock MultiVectorEncoder will fail to encode "
                "('Input language unknown') until model[0].auto_model.set_default_language(...) is called. "
                "Call set_default_language() before save() to avoid that."
            )
        differences = stock_tokenization_differences(self)
        if differences:
            logger.warning(
                "A stock MultiVectorEncoder loading this folder will tokenize some texts differently from colbert-ai "
                f"(first: {differences[0]}); load it with ColBERTXM for exact vectors."
            )
        with without_default_language_snippet_error(self.default_language is not None):
            super().save(path, *args, **kwargs)


def _non_null(metadata: dict[str, Any]) -> dict[str, Any]:
    """colbert-ai treats a null field as unset, so its default applies."""
    return {key: value for key, value in metadata.items() if value is not None}
