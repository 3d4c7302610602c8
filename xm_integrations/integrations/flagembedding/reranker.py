"""Mono-XM (and any XMOD cross-encoder) as a FlagEmbedding ``FlagReranker`` with a language per pair.

Requires the optional extra ``flag`` (``pip install xm-integrations[flag]``).
"""

from __future__ import annotations

import logging
import math
import queue
import uuid
from typing import Any

import numpy as np
import torch

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError, MissingExtraError, PoolWorkerError

try:
    from FlagEmbedding.inference.reranker.encoder_only.base import BaseReranker as FlagReranker
except ImportError as exc:  # the optional extra
    raise MissingExtraError(
        "XMFlagReranker needs FlagEmbedding >= 1.4: pip install 'xm-integrations[flag]'."
    ) from exc
from tqdm import tqdm, trange

from xm_integrations.engine import FastInferenceConfig, UnsetBatchSize, resolve_fast_inference
from xm_integrations.engine.pipeline import score_pairs
from xm_integrations.engine.tokenization import tokenize
from xm_integrations.integrations.flagembedding.pool import serve_device
from xm_integrations.integrations.flagembedding.registration import install as install_flag_registration
from xm_integrations.languages.routing import LanguageArg, RoutedPair
from xm_integrations.models.checkpoints import CheckpointFiles, check_cross_encoder_checkpoint
from xm_integrations.models.core import XmodWrapper
from xm_integrations.models.reranking import as_pair_batch, check_workers_alive, language_major_order, route_pairs

__all__ = ["XMFlagReranker"]

logger = logging.getLogger(__name__)

#: How often the caller checks that pool workers are alive while it waits for their results.
_POLL_SECONDS = 0.5


class XMFlagReranker(XmodWrapper, FlagReranker):
    """FlagEmbedding's ``FlagReranker`` for XMOD rerankers such as ``antoinelouis/mono-xm``.

    A stock ``FlagReranker`` cannot choose an XMOD adapter: extra constructor arguments are
    stored and ignored, and ``compute_score`` keyword arguments reach the tokenizer, never the
    model. This class keeps every stock argument and adds the language:

    * ``language=`` on the constructor, :meth:`set_default_language`, :attr:`default_language`
      and :attr:`languages`, as in :class:`~xm_integrations.MonoXM`; the model card's
      ``reranker.model.set_default_language("fr_FR")`` resolves aliases on this instance.
    * :meth:`compute_score` takes ``language=``: one language for the call, a list aligned with
      the pairs, or ``"auto"`` (detected from each passage, or from the query when the passage is
      blank). Pairs of different languages share batches; each goes through its own adapter.
    * With several devices, languages are resolved and checked before anything is sent to the
      worker processes, and a worker error (or a dead worker) reaches the caller within about a
      second instead of leaving it waiting forever.

    Truncation follows stock FlagEmbedding: the query is cut to ``query_max_length`` tokens
    (3/4 of ``max_length`` by default), the passage to ``max_length``, then the pair with its
    special tokens to ``max_length`` by cutting the passage only. ``max_length`` (512 by default)
    is capped at the 512 positions an XMOD model can embed.

    Speed: every XMOD layer runs only the adapters present in a batch. Scoring also takes the
    fast path of :mod:`xm_integrations.engine.pipeline` (``fast_inference=True``, the default, on
    every device): pairs tokenized once in a background thread, batches cut by a budget of padded
    tokens over pairs sorted by length (rows grouped by language), pinned asynchronous copies. Stock
    tokenizes pair by pair in Python and pads per batch of ``batch_size``, which bounds it well
    below what the GPU can score. The fast path keeps the same token ids and the model's own
    weights (float16 with ``use_fp16``, else float32; no autocast), so ``use_fp16`` still decides
    the precision.

    After ``import xm_integrations``, ``FlagAutoReranker.from_finetuned("antoinelouis/mono-xm")``
    returns this class.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *args: Any,
        language: str | None = None,
        fast_inference: bool | FastInferenceConfig = True,
        **kwargs: Any,
    ) -> None:
        """Load a checkpoint as ``FlagReranker`` does.

        Args:
            model_name_or_path: A Hub repo id or a local folder.
            *args: Stock positional arguments (``use_fp16``, ...).
            language: The default adapter, in any form :func:`~xm_integrations.resolve_language`
                accepts; the checkpoint's ``default_language`` when omitted.
            fast_inference: ``True`` (default): scoring takes the fast path, on every device
                (pool workers too), unless the call passes tokenizer options; a
                :class:`~xm_integrations.FastInferenceConfig` takes it with those settings
                (``max_batch_tokens`` caps a forward pass's memory); ``False``: stock batching
                (the adapters still run only where present).
            **kwargs: Every keyword argument of ``FlagReranker`` (``devices``, ``batch_size``,
                ``max_length``, ``normalize``, ``query_max_length``, ...).

        Raises:
            TypeError: ``default_language=`` was given (stock ``FlagReranker`` silently ignores it;
                use ``language=``), or the checkpoint is not an XMOD model.
            CheckpointError: the checkpoint cannot score pairs: a multi-vector (ColBERT-XM) model, no
                classification head, or a corrupt file (the message names the file).
            MissingCheckpointFileError: ``config.json``, the safetensors weights or the tokenizer
                files are missing (a ``FileNotFoundError``).
            UnknownLanguageError: the checkpoint has no adapter for ``language``.
        """
        self.pool = None  # stock __del__ reads it, even when loading fails
        resolve_fast_inference(fast_inference)  # a wrong type fails before the load
        self.fast_inference = fast_inference  # set early: stock __init__ may start nothing, but pools pickle it
        if "default_language" in kwargs:
            raise ArgumentTypeError(
                "XMFlagReranker takes language=..., not default_language= (which stock FlagReranker would "
                "silently ignore); e.g. XMFlagReranker(path, language='fr')."
            )
        files = CheckpointFiles(str(model_name_or_path), cache_folder=kwargs.get("cache_dir"))
        check_cross_encoder_checkpoint(files, type(self).__name__)
        if len(args) < 8:  # batch_size is stock's 9th positional argument
            kwargs.setdefault("batch_size", UnsetBatchSize(128))  # stock's default, marked as not given
        super().__init__(model_name_or_path, *args, **kwargs)
        self._attach_xmod(language=language, fast_inference=fast_inference)
        self.max_length = self._capped_length(self.max_length, self.max_length)

    def _xmod_container(self) -> torch.nn.Module:
        return self.model

    def compute_score(
        self,
        sentence_pairs: list[tuple[str, str]] | tuple[str, str],
        *,
        language: LanguageArg = None,
        **kwargs: Any,
    ) -> list[float] | np.ndarray:
        """Score (query, passage) pairs as ``FlagReranker.compute_score`` does, with ``language=``.

        Args:
            sentence_pairs: One pair or a list of pairs; every query and passage a ``str``
                (empty strings are scored).
            language: ``None`` (the default language), one language for every pair, a list
                aligned with the pairs (entries may be ``None`` or ``"auto"``), or ``"auto"``.
            **kwargs: As for stock: ``batch_size``, ``max_length``, ``query_max_length``,
                ``normalize`` (sigmoid of the raw logits); any other goes to the tokenizer (and
                keeps the stock path, see :meth:`compute_score_single_gpu`).

        Returns:
            One score per pair, in input order, as stock returns them: a list on one device,
            an array with several (an empty list for no pairs).

        Raises:
            UnknownLanguageError: a language has no adapter in the checkpoint.
            MissingLanguageError: no language given and the checkpoint has no default.
            ValueError: a list of languages whose length differs from the number of pairs.
            TypeError: an input is not a pair of two strings (the message names its index).
            RuntimeError: a pool worker failed or died (its error is in the message).
        """
        pairs, _ = as_pair_batch(sentence_pairs)  # one pair, a list of pairs or a NumPy array, as stock accepts
        routed = route_pairs(self, pairs, language)
        if not routed:
            return []
        # Instructions change the texts, not the language: detection and routing used the originals.
        detailed = self.get_detailed_inputs([tuple(pair) for pair in routed])
        routed = [RoutedPair(tuple(pair), original.lang_id) for pair, original in zip(detailed, routed)]
        if len(self.target_devices) == 1:
            return self.compute_score_single_gpu(routed, device=self.target_devices[0], **kwargs)
        if self.pool is None:
            self.pool = self.start_multi_process_pool()
        return self.encode_multi_process(routed, self.pool, **kwargs)

    @torch.no_grad()
    def compute_score_single_gpu(
        self,
        sentence_pairs: list[tuple[str, str]] | tuple[str, str],
        batch_size: int | None = None,
        query_max_length: int | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Stock single-device scoring, with XMOD's ``lang_ids`` added to every batch.

        Tokenization and truncation are FlagEmbedding's (see the class docstring and
        :meth:`_encode_pairs`). Pairs that carry no adapter (a direct call with plain pairs) use
        the default language. This is what pool workers call, on their device, so they take the
        fast path there as a single device does.

        On the fast path (see ``fast_inference``) batches are cut by padded tokens; a
        ``batch_size`` given by the caller (here or to the constructor) also caps the pairs per
        batch, as in stock, and decides as in stock whether progress bars show. Extra keyword
        arguments (tokenizer options) keep the stock path, which passes them to the tokenizer.

        On the stock path batches are cut after sorting by adapter, then longest first. Unlike
        stock, a failing forward pass is not retried with smaller batches for any
        ``RuntimeError`` (which hides real errors and loops forever once the batch size reaches
        0); only an out-of-memory error halves the batch.

        Returns:
            One score per pair, in input order: a list, also for one pair, as stock.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        max_length = self.max_length if max_length is None else max_length
        if query_max_length is None:
            query_max_length = self.query_max_length if self.query_max_length is not None else max_length * 3 // 4
        normalize = self.normalize if normalize is None else normalize
        device = self.target_devices[0] if device is None else device
        if batch_size <= 0:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size}.")

        pairs = route_pairs(self, as_pair_batch(sentence_pairs)[0], None)
        if not pairs:
            return []

        if device == "cpu":
            self.use_fp16 = False
        if self.use_fp16:
            self.model.half()
        self.model.to(device)
        self.model.eval()

        lang_ids = [pair.lang_id for pair in pairs]
        if self._fast_path_allowed(kwargs, frozenset(), device):

            def tokenize_fn(queries: list[str], passages: list[str]) -> list[list[int]]:
                return self._encode_pairs(queries, passages, query_max_length, max_length)

            config = self._fast_config()
            logits = score_pairs(self.model, self.tokenizer, pairs, np.asarray(lang_ids, dtype=np.int64),
                                 tokenize_fn=tokenize_fn, autocast_dtype=None,
                                 show_progress_bar=len(pairs) >= batch_size, **config.engine_kwargs(batch_size))
            scores = logits.view(-1).cpu().numpy().astype(np.float64)
        else:
            scores = self._score_stock(pairs, torch.tensor(lang_ids, dtype=torch.long), batch_size,
                                       query_max_length, max_length, device, kwargs)
        if normalize:
            return [float(1 / (1 + np.exp(-score))) for score in scores]
        return scores.tolist()

    def _score_stock(
        self,
        pairs: list[RoutedPair],
        lang_ids: torch.Tensor,
        batch_size: int,
        query_max_length: int,
        max_length: int,
        device: str,
        kwargs: dict[str, Any],
    ) -> np.ndarray:
        """Raw logits in input order through stock's batching: pre-tokenize, then batches of ``batch_size``."""
        all_ids: list[list[int]] = []
        for start in trange(0, len(pairs), batch_size, desc="pre tokenize", disable=len(pairs) < batch_size):
            chunk = pairs[start:start + batch_size]
            all_ids += self._encode_pairs([pair[0] for pair in chunk], [pair[1] for pair in chunk],
                                          query_max_length, max_length, **kwargs)

        order = language_major_order(lang_ids.tolist(), [len(ids) for ids in all_ids])
        scores = np.empty(len(pairs), dtype=np.float64)
        start = 0
        with tqdm(total=len(order), desc="Compute Scores", disable=len(order) < batch_size) as progress:
            while start < len(order):
                positions = order[start:start + batch_size]
                try:
                    logits = self._score_batch([all_ids[i] for i in positions], lang_ids[positions], device, kwargs)
                except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError since torch 2.5
                    if batch_size == 1:
                        raise
                    batch_size = max(1, batch_size // 2)
                    logger.warning("Out of memory on %s; retrying with batch_size=%s.", device, batch_size)
                    continue
                scores[positions] = logits
                start += len(positions)
                progress.update(len(positions))
        return scores

    def _encode_pairs(
        self, queries: list[str], passages: list[str], query_max_length: int, max_length: int, **tokenizer_kwargs: Any
    ) -> list[list[int]]:
        """Token ids of pairs, special tokens included, exactly as FlagEmbedding 1.4 builds them.

        Stock tokenizes queries (cut to ``query_max_length``) and passages (cut to
        ``max_length``) without special tokens, then calls ``prepare_for_model_compat`` once per
        pair; under transformers 5 that decodes both id lists and tokenizes the texts again as a
        pair, cut ``only_second`` to ``max_length``. Here the same steps run over the whole list:
        one tokenizer call for all the pairs (in the tokenizer's Rust threads) gives the same ids
        as one call per pair, which bounded the stock path; each distinct text is cut once (a
        query is shared by all its passages) and decoded in one Rust call; the tokenizer calls go
        through :func:`~xm_integrations.engine.pipeline.tokenize` (the Rust backend without
        transformers' per-encoding Python work or the shared word-cache lock), except a cut with
        caller's tokenizer options, which stays transformers' call. One detail is kept on purpose: the
        per-pair call goes through ``tokenizer(query, passage)``, which ignores an empty
        ``passage``, so a passage that decodes to ``""`` gives ``<s> query </s>``, not an empty
        second segment.
        """
        tokenizer = self.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)

        def cut(texts: list[str], limit: int) -> list[str]:
            unique = list(dict.fromkeys(texts))  # a query is shared by all its passages: cut it once
            if tokenizer_kwargs:
                ids = tokenizer(unique, return_tensors=None, add_special_tokens=False, max_length=limit,
                                truncation=True, **tokenizer_kwargs)["input_ids"]
            else:
                ids = tokenize(tokenizer, unique, max_length=limit, add_special_tokens=False)
            if backend is not None:  # what tokenizer.decode runs (no clean-up), as one call in Rust threads
                decoded = backend.decode_batch(ids, skip_special_tokens=False)
            else:
                decoded = tokenizer.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            by_text = dict(zip(unique, decoded))
            return [by_text[text] for text in texts]

        queries, passages = cut(queries, query_max_length), cut(passages, max_length)
        paired = [i for i, passage in enumerate(passages) if passage]
        alone = [i for i, passage in enumerate(passages) if not passage]
        encoded: list[list[int]] = [[] for _ in queries]
        for positions, seconds in ((paired, [passages[i] for i in paired]), (alone, None)):
            if positions:
                ids = tokenize(tokenizer, [queries[i] for i in positions], seconds, max_length=max_length,
                               truncation="only_second")
                for position, item in zip(positions, ids):
                    encoded[position] = item
        return encoded

    def _score_batch(
        self, ids: list[list[int]], lang_ids: torch.Tensor, device: str, kwargs: dict[str, Any]
    ) -> np.ndarray:
        """Raw logits of one batch of tokenized pairs, through their adapters."""
        inputs = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt", **kwargs).to(device)
        logits = self.model(**inputs, lang_ids=lang_ids.to(device), return_dict=True).logits
        return logits.view(-1).float().cpu().numpy()

    def start_multi_process_pool(self) -> dict[str, Any]:
        """Stock pool (one spawned process per device, each holding a pickled copy of this reranker),
        with workers that report errors instead of exiting silently."""
        logger.info("Start multi-process pool on devices: %s", ", ".join(map(str, self.target_devices)))
        self.model.to("cpu")
        self.model.share_memory()
        ctx = torch.multiprocessing.get_context("spawn")
        input_queue, output_queue = ctx.Queue(), ctx.Queue()
        processes = []
        for device in tqdm(self.target_devices, desc="initial target device"):
            process = ctx.Process(target=serve_device, args=(device, self, input_queue, output_queue), daemon=True)
            process.start()
            processes.append(process)
        return {"input": input_queue, "output": output_queue, "processes": processes}

    def encode_multi_process(self, sentence_pairs: list, pool: dict[str, Any], **kwargs: Any) -> np.ndarray:
        """Score routed pairs in the pool; one chunk per worker, as stock.

        Results are tagged with this call's id, so the results of a call abandoned on an error
        never mix with a later call's. While waiting, the caller checks every
        ``_POLL_SECONDS`` that the workers are alive.

        Raises:
            RuntimeError: a worker raised (its traceback is in the message) or died.
        """
        self._raise_if_dead(pool)
        call = uuid.uuid4().hex
        chunk_size = math.ceil(len(sentence_pairs) / len(pool["processes"]))
        chunks = [sentence_pairs[start:start + chunk_size] for start in range(0, len(sentence_pairs), chunk_size)]
        for chunk_id, chunk in enumerate(chunks):
            pool["input"].put([call, chunk_id, chunk, kwargs])
        results: dict[int, list[float]] = {}
        with tqdm(total=len(chunks), desc="Chunks", disable=len(chunks) < 2) as progress:
            while len(results) < len(chunks):
                result_call, chunk_id, scores, error = self._next_result(pool)
                if result_call != call:
                    continue  # left over from a call that failed earlier
                if error is not None:
                    raise PoolWorkerError(f"A {type(self).__name__} pool worker failed on chunk {chunk_id}:\n{error}")
                results[chunk_id] = scores
                progress.update(1)
        return np.concatenate([np.asarray(results[chunk_id], dtype=np.float64) for chunk_id in range(len(chunks))])

    def _next_result(self, pool: dict[str, Any]) -> list[Any]:
        """The next worker result, or an error as soon as a worker is found dead."""
        while True:
            try:
                return pool["output"].get(timeout=_POLL_SECONDS)
            except queue.Empty:
                self._raise_if_dead(pool)

    def _raise_if_dead(self, pool: dict[str, Any]) -> None:
        """Raise if a worker has died; a pool with a dead worker is stopped, so the next call starts afresh.

        It cannot be reused: its queue may hold chunks that no one will take.
        """
        try:
            check_workers_alive(pool["processes"], type(self).__name__)
        except RuntimeError as exc:
            if pool is self.pool:
                self.stop_self_pool()
                raise PoolWorkerError(f"{exc} (The pool was stopped; the next call starts a new one.)") from None
            raise


# Importing FlagEmbedding above ran its mapping module while this one was unfinished, so the
# registration hook deferred to here: FlagAutoReranker.from_finetuned("…/mono-xm") gives XMFlagReranker.
install_flag_registration()
