"""The default index backend: LanceDB, embedded (a folder on disk, no server).

Layout: one Lance table, ``passages``, in the index folder; one row per document with ``id``,
``language``, ``text``, ``metadata`` (JSON) and ``vectors`` (the document's token vectors: a list of
float16 vectors, or of the same float16-rounded values as float32 with ``vector_dtype="float32"``),
plus one typed column per filterable metadata key (added when a key first appears).
The :class:`~xm_integrations.index.IndexModelRecord` is kept in the table's schema
metadata, so it is written in the same commit that creates the table.

Candidate generation is LanceDB's multivector search over an IVF-PQ index of all token vectors:
for each query token it finds the nearest stored tokens (``nprobes`` partitions probed), keeps per
document the best similarity per query token (a missing one counts as the lowest seen) and sums
them, an XTR-style estimate of MaxSim from PQ codes. The best ``candidates`` documents are then
re-scored by exact MaxSim on their float16 vectors (:class:`~xm_integrations.index.MultiVectorIndex`).
Documents written after the IVF-PQ index was trained are searched exhaustively until
:meth:`LanceDBIndex.optimize` (run automatically after an add once they exceed a tenth of the
index) folds them in; tables below ``min_documents_for_ann`` documents are searched exhaustively.

Every write is one Lance commit: a reader opened at any time sees the index as of a commit, never
half a chunk, and a killed writer leaves the last committed version. One writer at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from xm_integrations.errors import IndexFormatError, InvalidArgumentError, MissingExtraError, XMIntegrationsError
from xm_integrations.index.base import MultiVectorIndex
from xm_integrations.index.documents import (
    DocumentBatch,
    StoredDocument,
    new_field_kinds,
    packed_from_arrow,
    scalar_value,
)
from xm_integrations.index.record import IndexModelRecord
from xm_integrations.scoring.stores import PackedTokens

__all__ = ["DEFAULT_NPROBES", "DOCUMENTS_PER_PROBE", "LanceDBIndex", "default_nprobes"]

#: IVF partitions probed per query token on indexes of up to ``DEFAULT_NPROBES * DOCUMENTS_PER_PROBE``
#: documents (LanceDB's own default).
DEFAULT_NPROBES = 20

#: Beyond that, the default grows by one probe per this many documents (see :func:`default_nprobes`).
DOCUMENTS_PER_PROBE = 20_000

_TABLE = "passages"
_RECORD_KEY = b"xm_index"
_VECTOR_INDEX = "vectors_idx"
_ID_INDEX = "id_idx"
_BASE_COLUMNS = ("id", "language", "text", "metadata", "vectors")
_VECTOR_DTYPES = ("float16", "float32")


def default_nprobes(documents: int) -> int:
    """Partitions probed per query token when :class:`LanceDBIndex` is given no ``nprobes``, for ``documents``.

    :data:`DEFAULT_NPROBES`, or one per :data:`DOCUMENTS_PER_PROBE` documents on larger indexes. The
    partition count grows with the corpus (one per ``tokens_per_partition`` token vectors), so a
    fixed number of probes covers an ever smaller share of it and the query tokens' true
    neighbours fall outside; probing more partitions is cheaper than re-scoring more candidates
    for the same recall (topic-clustered vectors at 1M documents: 800 candidates give recall@10
    0.92-0.95 with 20 probes and 0.99 with 50; ``docs/index.md``).
    """
    return max(DEFAULT_NPROBES, -(-documents // DOCUMENTS_PER_PROBE))


def _arrow_vector_types() -> dict[str, Any]:
    import pyarrow as pa

    return {"float16": pa.float16(), "float32": pa.float32()}


def _import_lancedb() -> Any:
    try:
        import lancedb
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            "LanceDBIndex needs LanceDB: pip install 'xm-integrations[lancedb]' (or pip install 'lancedb>=0.40')."
        ) from exc
    return lancedb


class LanceDBIndex(MultiVectorIndex):
    """A multi-vector index in a local folder (LanceDB), searched by approximate candidates plus exact MaxSim.

    Opening a folder that does not exist (or is empty) gives an empty index, created on the first
    add; opening an existing index checks ``model`` against the model it was built with.

    Example::

        from xm_integrations import ColBERTXM, MonoXM
        from xm_integrations.index import LanceDBIndex

        index = LanceDBIndex("wiki-index", model=ColBERTXM("antoinelouis/colbert-xm"))
        index.add_documents(passages, language="auto", show_progress_bar=True)  # re-run: resumes
        index.search(["Was ist Photosynthese?"], language="de", top_k=10, filter={"language": "fr"})

    Args:
        path: The index folder.
        model: The :class:`~xm_integrations.ColBERTXM` that encodes passages and queries (see
            :class:`MultiVectorIndex`).
        nprobes: IVF partitions probed per query token; None: :func:`default_nprobes` of the index's
            size (20 up to 400k documents, 50 at 1M). With ``candidates``, the knob that trades
            recall for latency.
        min_documents_for_ann: Below this many documents no IVF-PQ index is trained and every
            search is exhaustive (exact, and fast at that size).
        num_partitions / num_sub_vectors: IVF-PQ shape; default: one partition per
            ``tokens_per_partition`` token vectors, ``dim / 8`` sub-vectors (one byte each).
        tokens_per_partition: Token vectors per IVF partition when ``num_partitions`` is None
            (LanceDB's own ``target_partition_size`` counts documents, which for multivectors
            makes partitions ~50x too large: every probe would scan a big share of the corpus).
        max_iterations: k-means iterations when training IVF and PQ (LanceDB's default is 50;
            candidates only need coarse partitions, since every candidate is re-scored exactly).
        vector_dtype: Column type of the stored vectors of a new index: ``"float16"`` (default)
            or ``"float32"``. The values are float16-rounded either way (scores do not change);
            float32 doubles the re-scoring store but LanceDB trains its IVF-PQ index about 6x
            faster on it (its float16 path is largely serial), which matters from about 100k
            passages. An existing index keeps the type it was built with.

    Raises:
        IndexFormatError: ``path`` is a file, a folder holding something else, or a corrupt index.
        IndexModelMismatchError: ``model`` does not match the model the index was built with.
        InvalidArgumentError: ``vector_dtype`` is not a supported type, or differs from an existing index's.
        MissingExtraError: LanceDB is not installed.
    """

    _writes_in_background = True  # LanceDB commits are atomic versions; readers and a writer may run at once

    def __init__(
        self,
        path: str | os.PathLike,
        model: Any = None,
        *,
        nprobes: int | None = None,
        min_documents_for_ann: int = 1000,
        num_partitions: int | None = None,
        num_sub_vectors: int | None = None,
        tokens_per_partition: int = 4096,
        max_iterations: int = 10,
        vector_dtype: Literal["float16", "float32"] | None = None,
    ) -> None:
        super().__init__(model)
        if vector_dtype not in (None, *_VECTOR_DTYPES):
            raise InvalidArgumentError(f"vector_dtype must be one of {', '.join(map(repr, _VECTOR_DTYPES))}, "
                                       f"got {vector_dtype!r}.")
        lancedb = _import_lancedb()
        self.path = Path(path)
        self.nprobes = nprobes
        self.min_documents_for_ann = min_documents_for_ann
        self.num_partitions = num_partitions
        self.num_sub_vectors = num_sub_vectors
        self.tokens_per_partition = tokens_per_partition
        self.max_iterations = max_iterations
        self._lancedb = lancedb
        self._check_folder()
        self._table = self._open_table()
        self._check_model()
        self._vector_dtype = self._stored_vector_dtype() or vector_dtype or "float16"
        if vector_dtype is not None and vector_dtype != self._vector_dtype:
            raise InvalidArgumentError(f"{self.path} stores {self._vector_dtype} vectors; vector_dtype={vector_dtype!r} "
                                       f"applies only to a new index (drop the argument, or build into a new folder).")

    # -- opening -----------------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def record(self) -> IndexModelRecord | None:
        if self._table is None and (self.path / f"{_TABLE}.lance").exists():  # another process created it since
            self._table = self._open_table()
            self._check_model()
        return self._record

    @property
    def vector_dtype(self) -> str:
        """The column type of the stored vectors, ``"float16"`` or ``"float32"``."""
        return self._stored_vector_dtype() or self._vector_dtype

    def _stored_vector_dtype(self) -> str | None:
        if self._table is None:
            return None
        stored = self._table.schema.field("vectors").type.value_type.value_type
        return next(name for name, arrow_type in _arrow_vector_types().items() if arrow_type == stored)

    @property
    def table(self) -> Any:
        """The underlying ``lancedb`` table (None until the first add), for what this class does not wrap."""
        return self._table

    def _check_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise IndexFormatError(f"{self.path} is a file, not an index folder; give a folder path.")
        if self.path.is_dir():
            contents = sorted(entry.name for entry in self.path.iterdir())
            if contents and f"{_TABLE}.lance" not in contents:
                raise IndexFormatError(
                    f"{self.path} is not an xm-integrations index (it holds {', '.join(contents[:3])}"
                    f"{', ...' if len(contents) > 3 else ''}); give a new or empty folder."
                )

    def _open_table(self) -> Any:
        self._record: IndexModelRecord | None = None
        if not (self.path / f"{_TABLE}.lance").exists():
            return None
        try:
            table = self._connect().open_table(_TABLE)
            schema = table.schema
        except Exception as exc:  # Lance reports a damaged manifest or data file in many ways
            raise IndexFormatError(f"{self.path} holds a damaged index ({type(exc).__name__}: {exc}); "
                                   f"rebuild it into a new folder.") from exc
        raw = (schema.metadata or {}).get(_RECORD_KEY)
        if raw is None or any(name not in schema.names for name in _BASE_COLUMNS):
            raise IndexFormatError(f"{self.path} holds a LanceDB table that xm-integrations did not write (no model "
                                   f"record); give a new or empty folder.")
        self._record = IndexModelRecord.from_json(raw, str(self.path))
        return table

    def _create(self, record: IndexModelRecord) -> None:
        import pyarrow as pa

        schema = pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("language", pa.string()),
                pa.field("text", pa.string()),
                pa.field("metadata", pa.string()),
                pa.field("vectors", pa.list_(pa.list_(_arrow_vector_types()[self._vector_dtype], record.dim))),
            ],
            metadata={_RECORD_KEY: record.to_json().encode()},
        )
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._table = self._connect().create_table(_TABLE, schema=schema)
        except BaseException:
            if created:  # leave no folder behind that the caller did not have
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._record = record

    def _connect(self) -> Any:
        """The LanceDB connection; made only once the folder holds (or is about to hold) the table, since
        connecting creates the folder."""
        return self._lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))

    # -- writing -----------------------------------------------------------------------------------------------

    def _write(self, batch: DocumentBatch, *, upsert: bool) -> None:
        data = self._arrow_batch(batch)
        if upsert:
            self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        else:
            self._table.add(data)

    def _arrow_batch(self, batch: DocumentBatch) -> Any:
        import pyarrow as pa

        self._add_metadata_columns(batch.metadata)
        schema = self._table.schema
        offsets = batch.vectors.offsets.numpy().astype(np.int32)
        values = batch.vectors.tokens.numpy().reshape(-1).astype(self.vector_dtype, copy=False)  # float16-rounded
        tokens = pa.FixedSizeListArray.from_arrays(pa.array(values), self.record.dim)
        columns: dict[str, Any] = {
            "id": pa.array(batch.ids, pa.string()),
            "language": pa.array(batch.languages, pa.string()),
            "text": pa.array(batch.texts, pa.string()),
            "metadata": pa.array([json.dumps(entry, ensure_ascii=False) for entry in batch.metadata], pa.string()),
            "vectors": pa.ListArray.from_arrays(pa.array(offsets), tokens),
        }
        for field in schema:
            if field.name not in columns:
                values = [scalar_value(entry.get(field.name)) for entry in batch.metadata]
                try:
                    columns[field.name] = pa.array(values, field.type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise InvalidArgumentError(
                        f"metadata {field.name!r} is stored as {field.type} in {self.path}, but a document gives "
                        f"{next(v for v in values if v is not None)!r}; keep one type per key."
                    ) from exc
        return pa.Table.from_pydict(columns, schema=schema)

    def _add_metadata_columns(self, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Add a typed column for every filterable metadata key with scalar values that has none yet."""
        import pyarrow as pa

        types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
        fields = [pa.field(key, types[kind]) for key, kind in new_field_kinds(metadata, self._table.schema.names).items()]
        if fields:
            self._table.add_columns(fields)

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        if self._table is None or not ids:
            return set()
        found = (self._table.search().where(_in_list("id", ids)).select(["id"]).limit(len(ids)).to_arrow())
        return set(found.column("id").to_pylist())

    def _delete(self, ids: Sequence[str]) -> None:
        self._table.delete(_in_list("id", ids))

    def _after_write(self) -> None:
        """Train the IVF-PQ index once the table is large enough; fold new documents into it once they are many."""
        if self._table is None:
            return
        if _VECTOR_INDEX not in {index.name for index in self._table.list_indices()}:
            if self._table.count_rows() >= self.min_documents_for_ann:
                self.optimize()
            return
        stats = self._table.index_stats(_VECTOR_INDEX)
        if stats is not None and stats.num_unindexed_rows > max(stats.num_indexed_rows // 10, 0):
            self.optimize()

    def optimize(self, *, retrain: bool = False) -> None:
        """Train the IVF-PQ index (and an id index) if there is none, else fold unindexed documents into it.

        ``retrain=True`` trains the IVF-PQ index again on everything (worth it after the corpus
        has grown several-fold: the partitions were trained on the first documents). Also
        compacts the table's files. Runs in one commit per step; readers keep searching meanwhile.
        """
        from lancedb.index import BTree, IvfPq

        if self._table is None or self._table.count_rows() == 0:
            return
        names = {index.name for index in self._table.list_indices()}
        if _VECTOR_INDEX in names and not retrain:
            self._table.optimize()
            return
        dim = self.record.dim
        config = IvfPq(
            distance_type="cosine",
            num_partitions=self.num_partitions or max(1, round(self._estimated_tokens() / self.tokens_per_partition)),
            num_sub_vectors=self.num_sub_vectors or max(1, dim // 8),
            max_iterations=self.max_iterations,
        )
        self._table.create_index("vectors", config=config, replace=True, name=_VECTOR_INDEX)
        if _ID_INDEX not in names:
            self._table.create_index("id", config=BTree(), name=_ID_INDEX)

    def _estimated_tokens(self, sample: int = 2000) -> int:
        """Token vectors in the table, from the mean length of up to ``sample`` documents (reads only those)."""
        rows = self._table.search().select(["vectors"]).limit(sample).to_arrow().column("vectors")
        lengths = rows.combine_chunks().value_lengths().to_numpy() if len(rows) else np.zeros(1)
        return int(float(np.mean(lengths)) * self._table.count_rows())

    # -- reading -----------------------------------------------------------------------------------------------

    def count(self, filter: Mapping[str, Any] | None = None, where: Any = None) -> int:
        """How many documents the index holds (those matching ``filter`` and ``where``, when given)."""
        if self.record is None:
            return 0
        sql = self._sql(self._resolve_filter(filter), where)
        with _filter_errors(where):
            return self._table.count_rows(sql)

    def _candidates(self, query: torch.Tensor, limit: int, filter: dict[str, list[Any]], where: Any
                    ) -> tuple[list[str], PackedTokens]:
        search = (self._table.search(query.numpy().astype(np.float32), vector_column_name="vectors")
                  .distance_type("cosine").limit(limit).select(["id", "vectors", "_distance"]))
        search = search.nprobes(self.nprobes if self.nprobes is not None else default_nprobes(self._size_hint()))
        sql = self._sql(filter, where)
        if sql:
            search = search.where(sql, prefilter=True)
        with _filter_errors(where):
            found = search.to_arrow()
        return found.column("id").to_pylist(), self._packed(found.column("vectors"))

    def _scan(self, filter: dict[str, list[Any]], where: Any, batch_documents: int
              ) -> Iterator[tuple[list[str], PackedTokens]]:
        query = self._table.search().select(["id", "vectors"]).limit(None)
        sql = self._sql(filter, where)
        if sql:
            query = query.where(sql)
        with _filter_errors(where):
            batches = query.to_batches(batch_documents)
        for batch in batches:
            if batch.num_rows:
                yield batch.column("id").to_pylist(), self._packed(batch.column("vectors"))

    def _fetch(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        if not ids:
            return {}
        found = (self._table.search().where(_in_list("id", ids)).select(["id", "text", "language", "metadata"])
                 .limit(len(ids)).to_arrow().to_pylist())
        return {row["id"]: StoredDocument(row["id"], row["text"], row["language"], json.loads(row["metadata"] or "{}"))
                for row in found}

    def _packed(self, column: Any) -> PackedTokens:
        """A Lance ``list<fixed_size_list<float16 or float32>>`` column as float32 :class:`PackedTokens`, what MaxSim scores."""
        return packed_from_arrow(column, self.record.dim)

    def _sql(self, filter: dict[str, list[Any]], where: Any) -> str | None:
        clauses = []
        for key, values in filter.items():
            if key not in self._table.schema.names:
                raise InvalidArgumentError(f"cannot filter on {key!r}: no document in {self.path} has it as a "
                                           f"filterable field (fields: {', '.join(self._filterable_fields())}).")
            clauses.append(_in_list(key, values))
        if where is not None:
            if not isinstance(where, str) or not where.strip():
                raise InvalidArgumentError(f"where must be a non-empty SQL expression string, got {where!r}.")
            clauses.append(f"({where})")
        return " AND ".join(clauses) or None

    def _filterable_fields(self) -> list[str]:
        return [name for name in self._table.schema.names if name not in ("text", "metadata", "vectors")]


@contextlib.contextmanager
def _filter_errors(where: Any) -> Iterator[None]:
    """Lance's error on a ``where`` it cannot parse or apply, as an :class:`InvalidArgumentError` that quotes it."""
    try:
        yield
    except Exception as exc:
        if where is None or isinstance(exc, XMIntegrationsError):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidArgumentError(f"where {where!r} is not a filter this index can apply ({message}); use SQL over "
                                   f"id, language and the metadata fields, e.g. \"language = 'fr_XX' AND year > 2000\".") from None


def _in_list(column: str, values: Sequence[Any]) -> str:
    """``column IN (...)`` in Lance SQL, with strings quoted (a ``'`` doubled) and the column name quoted."""
    literals = ", ".join(_literal(value) for value in values)
    return f"`{column}` IN ({literals})"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
