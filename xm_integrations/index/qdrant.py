"""The server backend: Qdrant, from one process to a sharded, replicated cluster, through ``qdrant-client``.

Layout: one collection (``passages`` by default) with one point per document. Its id is a UUID
derived from the document id (so writing a document twice replaces it instead of duplicating it);
its payload holds ``id``, ``language``, ``text`` and ``metadata`` (a JSON object; filterable keys
are read as ``metadata.<key>``); it has two named vectors:

* ``tokens``: the document's token vectors as a multivector with the ``MAX_SIM`` comparator and
  the dot product, stored as float16, HNSW off (``m=0``): it is only ever scored exactly;
* ``pooled``: the normalised mean of the token vectors, with an HNSW index: the first stage.

Search follows Qdrant's advice for large multivector collections: a first stage on one vector
per document (``pooled``, the query's pooled vector, ``candidates`` documents), then MaxSim
re-scoring of those candidates on ``tokens`` *inside the engine*, in one request, so only ids and
scores cross the network. The scores are the exact MaxSim of the stored vectors, as with every
backend; ``rescore="client"`` fetches the candidates' vectors and re-scores them here instead.
``exact=True`` scores every (filtered) document in the engine.

The :class:`~xm_integrations.index.IndexModelRecord` and the types of the filterable metadata keys
live in the collection's metadata. Writes go in batches of ``upsert_batch_size`` points, each
retried on transient errors; Qdrant has no multi-point transactions, so an interrupted chunk
leaves some of its documents, each one whole, and a re-run adds the rest.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from xm_integrations.errors import (
    ArgumentTypeError,
    IndexBackendError,
    IndexFormatError,
    InvalidArgumentError,
    MissingExtraError,
)
from xm_integrations.index.base import MultiVectorIndex
from xm_integrations.index.documents import DocumentBatch, StoredDocument, new_field_kinds, scalar_value
from xm_integrations.index.record import IndexModelRecord
from xm_integrations.scoring.stores import PackedTokens

__all__ = ["QdrantIndex", "point_id"]

_TOKENS = "tokens"
_POOLED = "pooled"
_RECORD_KEY = "xm_index"
_FIELDS_KEY = "xm_fields"
#: Namespace of the point UUIDs: ``uuid5(_NAMESPACE, document_id)``. Never change it: stored ids depend on it.
_NAMESPACE = uuid.UUID("6f1f4c3e-6d2b-5a0e-9b47-3c2f0e8a9d11")
#: Points per ``retrieve``/``delete`` request when looking ids up.
_LOOKUP_BATCH = 1024
#: HTTP statuses and gRPC codes worth retrying: the server is busy, restarting or unreachable for a moment.
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


def _import_qdrant() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:
        raise MissingExtraError(
            "QdrantIndex needs qdrant-client: pip install 'xm-integrations[qdrant]' (or pip install 'qdrant-client>=1.20')."
        ) from exc
    return qdrant_client


def point_id(document_id: str) -> str:
    """The Qdrant point id (a UUID string) that stores the document ``document_id``."""
    return str(uuid.uuid5(_NAMESPACE, str(document_id)))


class QdrantIndex(MultiVectorIndex):
    """A multi-vector index in a Qdrant collection: a pooled first stage, then exact MaxSim in the engine.

    Give exactly one of ``url`` (a server or cluster), ``path`` (qdrant-client's local mode in a
    folder), ``location=":memory:"`` (local mode in memory) or ``client`` (a configured
    ``QdrantClient``). Local mode speaks the same API as a server and scores exactly in NumPy: it
    is a faithful test double, not Qdrant's performance (and it pickles its storage: open only
    folders you wrote).

    Example::

        from xm_integrations import ColBERTXM
        from xm_integrations.index import QdrantIndex

        index = QdrantIndex("http://qdrant:6333", model=ColBERTXM("antoinelouis/colbert-xm"), api_key=key,
                            shard_number=6, replication_factor=2)
        index.add_documents(passages, language="auto", show_progress_bar=True)
        index.search("Was ist Photosynthese?", language="de", top_k=10, filter={"language": "fr"})

    Args:
        url: Qdrant's URL (``http://host:6333``); the other connection options go in ``client_options``.
        model: The :class:`~xm_integrations.ColBERTXM` that encodes passages and queries (see
            :class:`~xm_integrations.index.MultiVectorIndex`).
        path / location: qdrant-client local mode, in a folder or ``":memory:"``.
        client: A ``qdrant_client.QdrantClient`` to use instead of making one.
        collection_name: The collection holding the index.
        api_key: Qdrant's API key (never logged nor shown in messages).
        rescore: ``"engine"`` re-scores candidates by MaxSim inside Qdrant (one request, ids and
            scores back); ``"client"`` fetches their vectors and re-scores them here.
        upsert_batch_size: Points per upsert request.
        max_retries / retry_backoff: Attempts after a transient error (a 5xx, 429, timeout or
            refused connection) and the first pause in seconds, doubled at each attempt.
        shard_number / replication_factor: Passed to Qdrant when it creates the collection.
        on_disk: Keep the token vectors on disk (memory-mapped) rather than in RAM; the pooled
            vectors and their HNSW graph stay in RAM.
        hnsw_ef: HNSW search breadth of the first stage (Qdrant's default when None).
        client_options: Anything else ``QdrantClient`` accepts (``prefer_grpc=True``, ``timeout``, ...).

    Raises:
        IndexFormatError: the collection exists but was not written by xm-integrations.
        IndexModelMismatchError: ``model`` does not match the model the index was built with.
        MissingExtraError: qdrant-client is not installed.
    """

    def __init__(
        self,
        url: str | None = None,
        model: Any = None,
        *,
        path: str | None = None,
        location: str | None = None,
        client: Any = None,
        collection_name: str = "passages",
        api_key: str | None = None,
        rescore: Literal["engine", "client"] = "engine",
        upsert_batch_size: int = 64,
        max_retries: int = 5,
        retry_backoff: float = 0.5,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        on_disk: bool = True,
        hnsw_ef: int | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(model)
        qdrant_client = _import_qdrant()
        given = [name for name, value in (("url", url), ("path", path), ("location", location), ("client", client))
                 if value is not None]
        if len(given) != 1:
            raise InvalidArgumentError(f"give exactly one of url, path, location or client (got "
                                       f"{', '.join(given) or 'none'}).")
        if rescore not in ("engine", "client"):
            raise InvalidArgumentError(f"rescore must be 'engine' or 'client', got {rescore!r}.")
        for name, value in (("upsert_batch_size", upsert_batch_size), ("max_retries", max_retries + 1)):
            if not isinstance(value, int) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
        self._models = qdrant_client.models
        self.client = client if client is not None else qdrant_client.QdrantClient(
            url=url, path=str(path) if path is not None else None, location=location, api_key=api_key,
            **client_options)
        self.collection_name = collection_name
        self.rescore = rescore
        self.upsert_batch_size = upsert_batch_size
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.collection_options = {"shard_number": shard_number, "replication_factor": replication_factor,
                                   "on_disk": on_disk}
        self.hnsw_ef = hnsw_ef
        self._where = f"url {url}" if url else f"path {path}" if path else f"location {location}" if location else "client"
        self._record: IndexModelRecord | None = None
        self._fields: dict[str, str] = {}
        try:
            self._open()
            self._check_model()
        except BaseException:
            if client is None:  # ours to close: local mode would keep its folder locked
                self.client.close()
            raise

    # -- opening -----------------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"Qdrant collection {self.collection_name!r} ({self._where})"

    @property
    def record(self) -> IndexModelRecord | None:
        if self._record is None and self._open():  # another process created it since
            self._check_model()
        return self._record

    def close(self) -> None:
        """Close the client (local mode releases its folder's lock)."""
        self.client.close()

    def _open(self) -> bool:
        """Read the record and fields of an existing collection; False when there is none yet."""
        if not self._call(self.client.collection_exists, self.collection_name):
            return False
        config = self._call(self.client.get_collection, self.collection_name).config
        metadata, vectors = config.metadata or {}, config.params.vectors
        if _RECORD_KEY not in metadata or not isinstance(vectors, Mapping) or _TOKENS not in vectors:
            raise IndexFormatError(f"{self.location} exists but xm-integrations did not write it (no model record); "
                                   f"give another collection_name.")
        self._record = IndexModelRecord.from_json(metadata[_RECORD_KEY], self.location)
        self._fields = dict(metadata.get(_FIELDS_KEY) or {})
        return True

    def _create(self, record: IndexModelRecord) -> None:
        models = self._models
        vectors = {
            _TOKENS: models.VectorParams(
                size=record.dim, distance=models.Distance.DOT, datatype=models.Datatype.FLOAT16,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                hnsw_config=models.HnswConfigDiff(m=0), on_disk=self.collection_options["on_disk"]),
            _POOLED: models.VectorParams(size=record.dim, distance=models.Distance.COSINE),
        }
        options = {key: value for key, value in self.collection_options.items() if key != "on_disk" and value is not None}
        try:
            self._call(self.client.create_collection, self.collection_name, vectors_config=vectors,
                       metadata={_RECORD_KEY: record.to_json(), _FIELDS_KEY: {}}, **options)
        except IndexBackendError:
            if not self._open():  # not a writer that created it first: a real failure
                raise
            self._record.check_compatible(record, self.location)
            return
        self._index_payload({"id": "str", "language": "str"}, prefix="")
        self._record = record

    def _index_payload(self, kinds: Mapping[str, str], prefix: str) -> None:
        """Payload indexes for filtered fields (a server needs them to filter fast; local mode ignores them)."""
        schemas = {"str": self._models.PayloadSchemaType.KEYWORD, "int": self._models.PayloadSchemaType.INTEGER,
                   "float": self._models.PayloadSchemaType.FLOAT, "bool": self._models.PayloadSchemaType.BOOL}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that payload indexes have no effect there
            for key, kind in kinds.items():
                self._call(self.client.create_payload_index, self.collection_name, f"{prefix}{key}",
                           field_schema=schemas[kind])

    # -- writing -----------------------------------------------------------------------------------------------

    def _write(self, batch: DocumentBatch, *, upsert: bool) -> None:
        self._register_fields(batch.metadata)
        points = [self._point(batch, i) for i in range(len(batch))]
        for start in range(0, len(points), self.upsert_batch_size):
            self._call(self.client.upsert, self.collection_name, points=points[start:start + self.upsert_batch_size],
                       wait=True)

    def _point(self, batch: DocumentBatch, i: int) -> Any:
        tokens = batch.vectors[i].float().numpy()
        pooled = tokens.mean(axis=0)
        norm = float(np.linalg.norm(pooled))
        pooled = pooled / norm if norm > 0 else tokens[0]
        payload = {"id": batch.ids[i], "language": batch.languages[i], "text": batch.texts[i],
                   "metadata": batch.metadata[i]}
        return self._models.PointStruct(id=point_id(batch.ids[i]), payload=payload,
                                        vector={_TOKENS: tokens.tolist(), _POOLED: pooled.tolist()})

    def _register_fields(self, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Record the type of every new filterable key (and index it), and refuse values of another type."""
        new = new_field_kinds(metadata, self._fields)
        for entry in metadata:
            for key, value in entry.items():
                kind = self._fields.get(key)
                if kind is not None and scalar_value(value) is not None and not _fits(kind, value):
                    raise InvalidArgumentError(f"metadata {key!r} is stored as {kind} in {self.location}, but a "
                                               f"document gives {value!r}; keep one type per key.")
        if new:
            self._fields.update(new)
            self._call(self.client.update_collection, self.collection_name, metadata={_FIELDS_KEY: self._fields})
            self._index_payload(new, prefix="metadata.")

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        if self._record is None or not ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_BATCH):
            points = self._call(self.client.retrieve, self.collection_name,
                                ids=[point_id(doc_id) for doc_id in ids[start:start + _LOOKUP_BATCH]],
                                with_payload=["id"], with_vectors=False)
            found.update(point.payload["id"] for point in points)
        return found

    def _delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _LOOKUP_BATCH):
            selector = self._models.PointIdsList(points=[point_id(doc_id) for doc_id in ids[start:start + _LOOKUP_BATCH]])
            self._call(self.client.delete, self.collection_name, points_selector=selector, wait=True)

    # -- reading -----------------------------------------------------------------------------------------------

    def count(self, filter: Mapping[str, Any] | None = None, where: Any = None) -> int:
        """How many documents the index holds (those matching ``filter`` and ``where``, a ``models.Filter``)."""
        if self.record is None:
            return 0
        condition = self._filter(self._resolve_filter(filter), where)
        return self._call(self.client.count, self.collection_name, count_filter=condition, exact=True).count

    def _size_hint(self) -> int:
        """Qdrant's approximate count: an exact one is a scan on a large sharded collection, and every search asks."""
        return self._call(self.client.count, self.collection_name, exact=False).count if self.record is not None else 0

    def _approximate_hits(self, query_vectors: list[torch.Tensor], keep: int, limit: int, filter_values: dict,
                          where: Any) -> list[list[tuple[str, float]]]:
        if self.rescore == "client":
            return super()._approximate_hits(query_vectors, keep, limit, filter_values, where)
        condition = self._filter(filter_values, where)
        requests = [self._models.QueryRequest(
            prefetch=self._models.Prefetch(query=_pooled(query), using=_POOLED, limit=limit, filter=condition,
                                           params=self._search_params()),
            query=query.tolist(), using=_TOKENS, limit=keep, filter=condition, with_payload=["id"],
        ) for query in query_vectors]
        return self._scored(requests)

    def _exhaustive_hits(self, query_vectors: list[torch.Tensor], keep: int, filter_values: dict, where: Any
                         ) -> list[list[tuple[str, float]]]:
        if self.rescore == "client":
            return super()._exhaustive_hits(query_vectors, keep, filter_values, where)
        condition = self._filter(filter_values, where)
        requests = [self._models.QueryRequest(query=query.tolist(), using=_TOKENS, limit=keep, filter=condition,
                                              params=self._models.SearchParams(exact=True), with_payload=["id"])
                    for query in query_vectors]
        return self._scored(requests)

    def _scored(self, requests: list[Any]) -> list[list[tuple[str, float]]]:
        if not requests:
            return []
        with warnings.catch_warnings():  # local mode says it searches exhaustively whatever the search params
            warnings.filterwarnings("ignore", message="Local mode performs exact", category=UserWarning)
            responses = self._call(self.client.query_batch_points, self.collection_name, requests=requests)
        return [[(point.payload["id"], float(point.score)) for point in response.points] for response in responses]

    def _candidates(self, query: torch.Tensor, limit: int, filter: dict[str, list[Any]], where: Any
                    ) -> tuple[list[str], PackedTokens]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Local mode performs exact", category=UserWarning)
            response = self._call(self.client.query_points, self.collection_name, query=_pooled(query), using=_POOLED,
                                  limit=limit, query_filter=self._filter(filter, where),
                                  search_params=self._search_params(), with_payload=["id"], with_vectors=[_TOKENS])
        return [point.payload["id"] for point in response.points], _packed(response.points)

    def _scan(self, filter: dict[str, list[Any]], where: Any, batch_documents: int
              ) -> Iterator[tuple[list[str], PackedTokens]]:
        condition, offset = self._filter(filter, where), None
        while True:
            points, offset = self._call(self.client.scroll, self.collection_name, scroll_filter=condition,
                                        limit=batch_documents, offset=offset, with_payload=["id"], with_vectors=[_TOKENS])
            if points:
                yield [point.payload["id"] for point in points], _packed(points)
            if offset is None:
                return

    def _fetch(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        stored = {}
        for start in range(0, len(ids), _LOOKUP_BATCH):
            points = self._call(self.client.retrieve, self.collection_name,
                                ids=[point_id(doc_id) for doc_id in ids[start:start + _LOOKUP_BATCH]],
                                with_payload=True, with_vectors=False)
            for point in points:
                payload = point.payload
                stored[payload["id"]] = StoredDocument(payload["id"], payload.get("text"), payload.get("language"),
                                                       dict(payload.get("metadata") or {}))
        return stored

    def _search_params(self) -> Any:
        return self._models.SearchParams(hnsw_ef=self.hnsw_ef) if self.hnsw_ef is not None else None

    def _filter(self, filter: dict[str, list[Any]], where: Any) -> Any:
        """``filter`` (and ``where``, a ``models.Filter``) as one Qdrant filter, or None."""
        models = self._models
        conditions = []
        for key, values in filter.items():
            if key in ("id", "language"):
                conditions.append(models.FieldCondition(key=key, match=models.MatchAny(any=[str(v) for v in values])))
                continue
            if key not in self._fields:
                fields = ", ".join(["id", "language", *sorted(self._fields)])
                raise InvalidArgumentError(f"cannot filter on {key!r}: no document in {self.location} has it as a "
                                           f"filterable field (fields: {fields}).")
            conditions.append(_field_condition(models, f"metadata.{key}", self._fields[key], values))
        if where is not None:
            if not isinstance(where, models.Filter):
                raise ArgumentTypeError(f"where must be a qdrant_client.models.Filter for QdrantIndex, got "
                                        f"{type(where).__name__}; for field = value filters use filter={{...}}.")
            conditions.append(where)
        return models.Filter(must=conditions) if conditions else None

    # -- transport ---------------------------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)``, retried with exponential backoff on transient errors.

        Raises:
            IndexBackendError: the error persists after ``max_retries`` retries, or is not transient.
        """
        for attempt in range(self.max_retries + 1):
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, (InvalidArgumentError, ArgumentTypeError)):
                    raise
                transient = _is_transient(exc)
                if not transient or attempt == self.max_retries:
                    retried = f" after {attempt} retries" if attempt else ""
                    raise IndexBackendError(f"Qdrant failed to {method.__name__} on {self.location}{retried}: "
                                            f"{_describe(exc)}") from exc
                time.sleep(self.retry_backoff * 2**attempt)
        raise IndexBackendError("unreachable")  # pragma: no cover (the loop returns or raises)


def _fits(kind: str, value: Any) -> bool:
    """Whether a scalar metadata value can be stored in a field of ``kind``."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _field_condition(models: Any, key: str, kind: str, values: list[Any]) -> Any:
    """``key`` equal to any of ``values``: one match for strings or integers, else one condition per value."""
    plain = str if kind == "str" else int if kind == "int" else None
    if plain is not None and all(isinstance(v, plain) and not isinstance(v, bool) for v in values):
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
    alternatives = []
    for value in values:
        if isinstance(value, (bool, str)):
            alternatives.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        else:  # a number against a float field (or a float against an int one): equality as a point range
            alternatives.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
    return models.Filter(should=alternatives)


def _pooled(query: torch.Tensor) -> list[float]:
    pooled = query.mean(dim=0)
    norm = float(pooled.norm())
    return (pooled / norm if norm > 0 else query[0]).tolist()


def _packed(points: Sequence[Any]) -> PackedTokens:
    """The ``tokens`` vectors of ``points`` as float32 :class:`PackedTokens`, what MaxSim scores."""
    matrices = [np.asarray(point.vector[_TOKENS], dtype=np.float32) for point in points]
    if not matrices:
        return PackedTokens(torch.zeros((0, 0)), torch.zeros(1, dtype=torch.int64))
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in matrices])])
    return PackedTokens(torch.from_numpy(np.concatenate(matrices)), torch.from_numpy(offsets.astype(np.int64)))


def _is_transient(exc: Exception) -> bool:
    """A failure that a retry may cure: no connection, a timeout, the server overloaded or restarting."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, ResponseHandlingException) or isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in _TRANSIENT_STATUSES
    code = getattr(exc, "code", None)
    with contextlib.suppress(Exception):
        return callable(code) and getattr(code(), "name", None) in _TRANSIENT_GRPC
    return False


def _describe(exc: Exception) -> str:
    """The first line of an engine error, prefixed by its type (no request payloads, no credentials)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
