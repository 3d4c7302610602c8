"""The multi-vector index interface: what every backend offers, and the model logic they share.

:class:`MultiVectorIndex` does everything that involves the model (encoding passages in chunks,
encoding queries, exact MaxSim re-scoring, Mono-XM reranking, the model check); a backend
implements a handful of storage primitives (write a batch in one commit, look ids up, delete,
candidate generation, a filtered scan, fetch stored fields). So LanceDB (this package's default,
:class:`~xm_integrations.index.LanceDBIndex`) and a server-backed store behave identically from
the caller's side: same arguments, same result format, same errors.

Search is two-stage: the backend proposes ``candidates`` documents per query from its approximate
index, then every candidate is re-scored by exact MaxSim (:func:`xm_integrations.maxsim`) on its
stored float16 vectors, so the scores are the exhaustive ones and only the *set* of candidates is
approximate. ``exact=True`` skips the first stage and scores every (filtered) document.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from xm_integrations.errors import ArgumentTypeError, DuplicateIdError, InvalidArgumentError
from xm_integrations.index.documents import (
    DocumentBatch,
    Passage,
    StoredDocument,
    check_filter,
    check_unique_ids,
    iter_passage_chunks,
    pack_float16,
    token_matrices,
)
from xm_integrations.index.record import IndexModelRecord
from xm_integrations.index.writer import ChunkWriter
from xm_integrations.scoring.late_interaction import maxsim
from xm_integrations.scoring.stores import PackedTokens

__all__ = ["DEFAULT_CANDIDATES", "DOCUMENTS_PER_CANDIDATE", "AddResult", "MultiVectorIndex", "OnExisting",
           "default_candidates"]

logger = logging.getLogger(__name__)

#: How to treat an id the index already holds: skip the new document, replace the stored one, or raise.
OnExisting = Literal["skip", "upsert", "error"]

#: Documents per query proposed by the approximate stage and re-scored exactly (at least ``top_k``),
#: on indexes of up to ``DEFAULT_CANDIDATES * DOCUMENTS_PER_CANDIDATE`` documents.
DEFAULT_CANDIDATES = 100

#: Beyond that, the default grows by one candidate per this many documents (see :func:`default_candidates`).
DOCUMENTS_PER_CANDIDATE = 1000


def default_candidates(documents: int) -> int:
    """Candidates re-scored per query when :meth:`MultiVectorIndex.search` is given none, for an index of ``documents``.

    :data:`DEFAULT_CANDIDATES`, or one per :data:`DOCUMENTS_PER_CANDIDATE` documents on larger
    indexes. The approximate stage ranks documents by their tokens nearest the query's tokens; the
    more documents share a topic, the more of them look alike there, so the depth that keeps
    recall@10 near 1 grows with the index (topic-clustered vectors: 100 suffice at 100k documents;
    at 1M 100 give recall@10 0.24, 1,000 give 0.99 with LanceDBIndex's default_nprobes; ``docs/index.md``).
    """
    return max(DEFAULT_CANDIDATES, -(-documents // DOCUMENTS_PER_CANDIDATE))


@dataclass(frozen=True)
class AddResult:
    """What an add did: documents written as new, replaced (``on_existing="upsert"``), and skipped."""

    added: int = 0
    updated: int = 0
    skipped: int = 0

    def __add__(self, other: AddResult) -> AddResult:
        return AddResult(self.added + other.added, self.updated + other.updated, self.skipped + other.skipped)


class MultiVectorIndex(ABC):
    """A persistent index of token vectors searched by MaxSim: add, search, delete, count, and the model that built it.

    Args:
        model: The :class:`~xm_integrations.ColBERTXM` that encodes passages and queries, or None
            for an index fed with precomputed vectors (:meth:`add`) and searched with
            ``query_embeddings``. It must match the index's :attr:`record`.
    """

    #: Whether :meth:`add_documents` may commit chunk ``k`` in a thread while chunk ``k + 1`` encodes: a
    #: backend whose writes and reads are safe from two threads at once (LanceDB) says so.
    _writes_in_background: bool = False

    def __init__(self, model: Any = None) -> None:
        self.model = model

    # -- backend primitives ------------------------------------------------------------------------------------

    @property
    @abstractmethod
    def record(self) -> IndexModelRecord | None:
        """The encoder the index was built with; None for an index that holds nothing yet."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the index lives (a folder, a URL), as messages cite it."""

    @abstractmethod
    def _create(self, record: IndexModelRecord) -> None:
        """Create the empty store with ``record``; called once, before the first write."""

    @abstractmethod
    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the index holds."""

    @abstractmethod
    def _write(self, batch: DocumentBatch, *, upsert: bool) -> None:
        """Write ``batch`` in one commit (all or nothing); with ``upsert`` stored ids are replaced."""

    @abstractmethod
    def _delete(self, ids: Sequence[str]) -> None:
        """Remove ``ids`` in one commit (absent ids are ignored)."""

    @abstractmethod
    def count(self, filter: Mapping[str, Any] | None = None, where: Any = None) -> int:
        """How many documents the index holds (those matching the filters, when given)."""

    @abstractmethod
    def _candidates(self, query: torch.Tensor, limit: int, filter: dict[str, list[Any]], where: Any
                    ) -> tuple[list[str], PackedTokens]:
        """Ids and stored vectors (float32) of up to ``limit`` approximate best documents for one ``(tokens, dim)`` query."""

    @abstractmethod
    def _scan(self, filter: dict[str, list[Any]], where: Any, batch_documents: int
              ) -> Iterator[tuple[list[str], PackedTokens]]:
        """Every document matching the filters, as ``(ids, float32 vectors)`` batches of at most ``batch_documents``."""

    @abstractmethod
    def _fetch(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """Text, language and metadata of ``ids`` (absent ids are left out)."""

    def _after_write(self) -> None:
        """Index maintenance after an add (train or extend the approximate index); nothing by default."""

    # -- writing -----------------------------------------------------------------------------------------------

    def add_documents(
        self,
        passages: Iterable[str | Mapping[str, Any]],
        *,
        language: str | None = None,
        on_existing: OnExisting = "skip",
        chunk_size: int = 1000,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> AddResult:
        """Encode ``passages`` with the model and write them, one commit per chunk of ``chunk_size``.

        Memory is bounded by one chunk, whatever the size of ``passages`` (read lazily: a
        generator over a file works). A build that stops (an error, Ctrl-C, a killed process)
        leaves every chunk written before it, and re-running the same call skips the ids already
        present (``on_existing="skip"``, the default), so it resumes where it stopped.

        Args:
            passages: Strings, or dicts with ``"text"`` and optional ``"id"`` (a string or an
                integer, stored as a string; default: the passage's 0-based position),
                ``"language"`` (overrides ``language``) and any other key, kept as metadata
                (keys made of letters, digits and ``_`` can be filtered on).
            language: Adapter of passages without their own: a code (``"fr"``), ``"auto"`` to
                detect each, or None for the checkpoint's default.
            on_existing: ``"skip"`` ids already indexed (they are not re-encoded), ``"upsert"``
                them (re-encode and replace), or ``"error"`` (raise :class:`DuplicateIdError`).
            chunk_size: Passages per encode-and-commit step.
            batch_size: The most passages per forward pass (None: the fast path's token budget).
            show_progress_bar: A bar over passages; None shows it when logging is at INFO or DEBUG.

        Returns:
            How many documents were added, updated and skipped.
        """
        model = self._require_model("add_documents")
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise InvalidArgumentError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        self._check_on_existing(on_existing)
        total = len(passages) if hasattr(passages, "__len__") else None
        result = AddResult()
        writer = ChunkWriter(lambda batch, upsert: self._write(batch, upsert=upsert),
                             background=self._writes_in_background)
        with tqdm(total=total, unit="passage", desc="Indexing", disable=not _show_progress(show_progress_bar)) as bar:
            with writer:
                for chunk in iter_passage_chunks(passages, chunk_size):
                    result += self._add_chunk(model, chunk, language, on_existing, batch_size, writer)
                    bar.update(len(chunk))
        self._after_write()
        return result

    def add(
        self,
        ids: Sequence[str | int],
        embeddings: Sequence[Any],
        *,
        languages: Sequence[str | None] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        on_existing: OnExisting = "error",
    ) -> AddResult:
        """Write precomputed document embeddings (one ``(tokens, dim)`` array or tensor per id) in one commit.

        Vectors are stored as float16; they should come from the index's model (an index created
        here without a model records only their dim). ``languages`` are stored as given (adapter
        codes, so that language filters match them); ``on_existing`` defaults to ``"error"``.
        """
        ids = [str(doc_id) for doc_id in ids]
        n = len(ids)
        self._check_on_existing(on_existing)
        batch = DocumentBatch(ids, pack_float16(embeddings, self.record.dim if self.record else None),
                              list(languages) if languages is not None else [None] * n,
                              list(texts) if texts is not None else [None] * n,
                              [dict(entry) for entry in metadata] if metadata is not None else [{}] * n)
        result = self._write_encoded(batch, on_existing)
        self._after_write()
        return result

    def delete(self, ids: Sequence[str | int]) -> int:
        """Remove the documents ``ids`` (absent ids are ignored) in one commit; returns how many were removed."""
        if isinstance(ids, (str, int)):
            ids = [ids]
        ids = [str(doc_id) for doc_id in ids]
        if not ids or self.record is None:
            return 0
        present = self._existing_ids(ids)
        if present:
            self._delete(sorted(present))
        return len(present)

    def __len__(self) -> int:
        return self.count()

    def close(self) -> None:
        """Release the backend's connection or files (nothing by default); the index can be opened again."""

    def __enter__(self) -> MultiVectorIndex:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _add_chunk(self, model: Any, chunk: list[Passage], language: str | None, on_existing: OnExisting,
                   batch_size: int | None, writer: ChunkWriter) -> AddResult:
        """Encode one chunk and hand it to ``writer``; ids of the chunk still being written count as present."""
        ids = [passage.id for passage in chunk]
        check_unique_ids(ids)
        present = self._existing_ids(ids) if self.record is not None else set()
        present |= writer.pending_ids.intersection(ids)
        if present and on_existing == "error":
            raise self._duplicates_error(present)
        if on_existing == "skip":
            chunk = [passage for passage in chunk if passage.id not in present]
        if not chunk:
            return AddResult(skipped=len(present))
        codes = model._resolve_input_languages(
            [passage.language or language for passage in chunk], len(chunk),
            lambda positions: [chunk[i].text for i in positions],
        )
        options = {} if batch_size is None else {"batch_size": batch_size}
        vectors = model.encode_document([passage.text for passage in chunk], language=codes,
                                        show_progress_bar=False, **options)
        batch = DocumentBatch([passage.id for passage in chunk], pack_float16(vectors), codes,
                              [passage.text for passage in chunk], [passage.metadata for passage in chunk])
        if self.record is None:  # created only once a first chunk is ready: a failed first chunk leaves no index
            self._create(IndexModelRecord.from_model(model))
        if on_existing == "skip":
            writer.submit(batch, batch.ids, upsert=False)
            return AddResult(added=len(batch), skipped=len(present))
        writer.submit(batch, batch.ids, upsert=bool(present))
        return AddResult(added=len(batch) - len(present), updated=len(present))

    def _write_encoded(self, batch: DocumentBatch, on_existing: OnExisting,
                       record: IndexModelRecord | None = None) -> AddResult:
        """Write vectors encoded elsewhere (:meth:`add`, a Ray job), creating the index if needed with ``record``
        (default: the model's, else only the vectors' dim)."""
        if self.record is None:
            if record is None:
                record = IndexModelRecord.from_model(self.model) if self.model is not None else IndexModelRecord(
                    dim=batch.vectors.dim)
            if record.dim != batch.vectors.dim:
                raise InvalidArgumentError(f"embeddings have dim {batch.vectors.dim}, the model {record.dim}.")
            self._create(record)
        return self._write_new(batch, on_existing)

    def _write_new(self, batch: DocumentBatch, on_existing: OnExisting) -> AddResult:
        """Write ``batch`` after looking its ids up, treating those present as ``on_existing`` says."""
        present = self._existing_ids(batch.ids)
        if present and on_existing == "error":
            raise self._duplicates_error(present)
        if present and on_existing == "skip":
            batch = batch.select([i for i, doc_id in enumerate(batch.ids) if doc_id not in present])
        if len(batch):
            self._write(batch, upsert=bool(present) and on_existing == "upsert")
        updated = len(present) if on_existing == "upsert" else 0
        return AddResult(added=len(batch) - updated, updated=updated,
                         skipped=len(present) if on_existing == "skip" else 0)

    def _duplicates_error(self, present: set[str]) -> DuplicateIdError:
        return DuplicateIdError(f"{len(present)} id(s) are already in {self.location} (e.g. {sorted(present)[0]!r}); "
                                f"pass on_existing='upsert' to replace them or 'skip' to keep them.")

    # -- searching ---------------------------------------------------------------------------------------------

    def search(
        self,
        queries: str | Sequence[str] | None = None,
        *,
        top_k: int = 10,
        language: str | Sequence[str] | None = None,
        filter: Mapping[str, Any] | None = None,
        where: Any = None,
        exact: bool = False,
        candidates: int | None = None,
        query_embeddings: Sequence[Any] | None = None,
        return_text: bool = False,
        return_metadata: bool = False,
        reranker: Any = None,
        rerank_candidates: int = 100,
        batch_size: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The ``top_k`` best documents of each query, in sentence-transformers' ``semantic_search`` format.

        Args:
            queries: Query texts (one string or a list), encoded by the model; or None with
                ``query_embeddings``.
            top_k: Results per query.
            language: Adapter of the queries: a code, a list (one per query) or ``"auto"``.
            filter: ``{field: value or [values]}`` on ``"id"``, ``"language"`` (any spelling
                :func:`~xm_integrations.resolve_language` accepts) or a metadata key; fields are
                ANDed, a list means any of its values. Works the same on every backend.
            where: A backend-native filter, ANDed with ``filter`` (LanceDB: an SQL expression
                over ``id``, ``language`` and the metadata keys, e.g. ``"year >= 2020"``).
            exact: Score every (filtered) document by MaxSim instead of the approximate stage:
                the exhaustive result, slower on large indexes.
            candidates: Documents per query taken from the approximate stage and re-scored
                exactly (default :func:`default_candidates` of the index's size: 100 up to 100k
                documents, one per 1,000 beyond; at least ``top_k``): the knob that trades recall
                for speed.
            query_embeddings: Precomputed ``(tokens, dim)`` query embeddings instead of ``queries``.
            return_text / return_metadata: Add ``"text"``, or ``"language"`` and ``"metadata"``.
            reranker: A :class:`~xm_integrations.MonoXM` that rescores the best
                ``rerank_candidates`` of each query (pairs through the adapter of their passage);
                results then carry ``"rerank_score"`` and are ordered by it.
            batch_size: The most queries (and reranked pairs) per forward pass.

        Returns:
            Per query, ``[{"corpus_id": id, "score": maxsim, ...}, ...]`` best first (ties in
            MaxSim broken by id order of the stage that found them).
        """
        for name, value in (("top_k", top_k), ("candidates", candidates), ("rerank_candidates", rerank_candidates)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
        query_vectors = self._query_vectors(queries, query_embeddings, language, batch_size)
        filter_values = self._resolve_filter(filter)
        keep = max(top_k, rerank_candidates) if reranker is not None else top_k
        if self.record is None:
            hits = [[] for _ in query_vectors]
        elif exact:
            hits = self._exhaustive_hits(query_vectors, keep, filter_values, where)
        else:
            limit = max(candidates if candidates is not None else default_candidates(self._size_hint()), keep)
            hits = self._approximate_hits(query_vectors, keep, limit, filter_values, where)
        texts = self._query_texts(queries)
        return [self._finish(hit_list, top_k, texts[i] if texts else None, reranker, return_text, return_metadata,
                             batch_size) for i, hit_list in enumerate(hits)]

    def _size_hint(self) -> int:
        """About how many documents the index holds, for :func:`default_candidates` on every search: exact by default,
        a backend with a costly exact count answers an estimate."""
        return self.count()

    def _query_vectors(self, queries: Any, query_embeddings: Any, language: Any, batch_size: int | None
                       ) -> list[torch.Tensor]:
        if (queries is None) == (query_embeddings is None):
            raise InvalidArgumentError("give either queries (texts) or query_embeddings, not both or neither.")
        if query_embeddings is None:
            model = self._require_model("search with query texts")
            texts = [queries] if isinstance(queries, str) else list(queries)
            if not texts:
                return []
            options = {} if batch_size is None else {"batch_size": batch_size}
            query_embeddings = model.encode_query(texts, language=language, show_progress_bar=False, **options)
        if len(query_embeddings) == 0:
            return []
        return [tensor.float() for tensor in token_matrices(query_embeddings, self.record.dim if self.record else None)]

    @staticmethod
    def _query_texts(queries: Any) -> list[str] | None:
        if queries is None:
            return None
        return [queries] if isinstance(queries, str) else list(queries)

    def _resolve_filter(self, filter: Mapping[str, Any] | None) -> dict[str, list[Any]]:
        values = check_filter(filter)
        if "language" in values:
            from xm_integrations.languages.resolution import resolve_language

            available = self.record.languages if self.record is not None else None
            values["language"] = [resolve_language(code, available) if available else code for code in values["language"]]
        if "id" in values:
            values["id"] = [str(doc_id) for doc_id in values["id"]]
        return values

    def _approximate_hits(self, query_vectors: list[torch.Tensor], keep: int, limit: int, filter_values: dict,
                          where: Any) -> list[list[tuple[str, float]]]:
        """Per query, the best ``keep`` of ``limit`` candidates as ``(id, maxsim)``: here, :meth:`_candidates`
        re-scored by :func:`~xm_integrations.maxsim`; a backend that scores MaxSim itself overrides this."""
        hits = []
        for query in query_vectors:
            ids, vectors = self._candidates(query, limit, filter_values, where)
            if not ids:
                hits.append([])
                continue
            scores = maxsim([query], vectors)[0]
            order = torch.sort(scores, descending=True, stable=True).indices[:keep].tolist()
            hits.append([(ids[i], float(scores[i])) for i in order])
        return hits

    def _exhaustive_hits(self, query_vectors: list[torch.Tensor], keep: int, filter_values: dict, where: Any
                         ) -> list[list[tuple[str, float]]]:
        """Per query, the best ``keep`` of every filtered document by MaxSim: here, over :meth:`_scan`."""
        best_scores = [torch.empty(0) for _ in query_vectors]
        best_ids: list[list[str]] = [[] for _ in query_vectors]
        for ids, vectors in self._scan(filter_values, where, batch_documents=4096):
            scores = maxsim(query_vectors, vectors)
            for row in range(len(query_vectors)):
                merged = torch.cat([best_scores[row], scores[row]])
                merged_ids = best_ids[row] + ids
                order = torch.sort(merged, descending=True, stable=True).indices[:keep]
                best_scores[row] = merged[order]
                best_ids[row] = [merged_ids[i] for i in order.tolist()]
        return [list(zip(ids, scores.tolist())) for ids, scores in zip(best_ids, best_scores)]

    def _finish(self, hits: list[tuple[str, float]], top_k: int, query: str | None, reranker: Any,
                return_text: bool, return_metadata: bool, batch_size: int | None) -> list[dict[str, Any]]:
        results = [{"corpus_id": doc_id, "score": score} for doc_id, score in hits]
        if not results or not (reranker is not None or return_text or return_metadata):
            return results[:top_k]
        stored = self._fetch([hit["corpus_id"] for hit in results])
        if reranker is not None:
            self._rerank(results, stored, query, reranker, batch_size)
        for hit in results[:top_k]:
            document = stored[hit["corpus_id"]]
            if return_text:
                hit["text"] = document.text
            if return_metadata:
                hit["language"] = document.language
                hit["metadata"] = document.metadata
        return results[:top_k]

    def _rerank(self, results: list[dict[str, Any]], stored: dict[str, StoredDocument], query: str | None,
                reranker: Any, batch_size: int | None) -> None:
        if query is None:
            raise InvalidArgumentError("reranking needs the query texts: pass queries, not only query_embeddings.")
        missing = [hit["corpus_id"] for hit in results if stored[hit["corpus_id"]].text is None]
        if missing:
            raise InvalidArgumentError(f"document {missing[0]!r} has no stored text, so it cannot be reranked; "
                                       f"add documents with their texts.")
        options = {} if batch_size is None else {"batch_size": batch_size}
        scores = reranker.predict([(query, stored[hit["corpus_id"]].text) for hit in results],
                                  language=[stored[hit["corpus_id"]].language for hit in results],
                                  show_progress_bar=False, **options)
        for hit, score in zip(results, scores):
            hit["rerank_score"] = float(score)
        results.sort(key=lambda hit: -hit["rerank_score"])  # stable: MaxSim order breaks ties

    # -- checks ------------------------------------------------------------------------------------------------

    def _check_model(self) -> None:
        """Raise :class:`~xm_integrations.errors.IndexModelMismatchError` if the model does not match the record."""
        if self.model is not None and self.record is not None:
            self.record.check_compatible(IndexModelRecord.from_model(self.model), self.location)

    def _require_model(self, action: str) -> Any:
        if self.model is None:
            raise InvalidArgumentError(f"{action} needs a model: open the index with model=ColBERTXM(...).")
        return self.model

    @staticmethod
    def _check_on_existing(on_existing: str) -> None:
        if on_existing not in ("skip", "upsert", "error"):
            raise InvalidArgumentError(f"on_existing must be 'skip', 'upsert' or 'error', got {on_existing!r}.")


def _show_progress(show_progress_bar: bool | None) -> bool:
    """sentence-transformers' default: a bar when this package logs at INFO or DEBUG."""
    if show_progress_bar is None:
        return logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
    if not isinstance(show_progress_bar, bool):
        raise ArgumentTypeError(f"show_progress_bar must be a bool or None, got {type(show_progress_bar).__name__}.")
    return show_progress_bar
