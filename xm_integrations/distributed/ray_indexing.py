"""Write what Ray encodes into an index: the driver streams encoded batches into any :class:`MultiVectorIndex`.

Encoding is spread over the cluster; writing stays on the driver, one commit per chunk, because
an index has one writer (LanceDB) or is written through one client (Qdrant). Resuming works as
for :meth:`~xm_integrations.index.MultiVectorIndex.add_documents`: the ids already in the index
are looked up first and not encoded again, and a batch that Ray re-runs after a lost worker is
skipped when it arrives twice, so a killed job neither loses nor duplicates passages.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from xm_integrations.distributed.ray_encoding import RECORD_METADATA_KEY, connect, encode_with_ray, passage_dataset
from xm_integrations.errors import IndexFormatError, InvalidArgumentError
from xm_integrations.index.base import AddResult, MultiVectorIndex, OnExisting, _show_progress
from xm_integrations.index.documents import DocumentBatch, check_unique_ids, pack_float16, packed_from_arrow, to_passage
from xm_integrations.index.record import IndexModelRecord

__all__ = ["FailedBatch", "RayIndexingResult", "add_encoded", "index_with_ray"]

#: Ids looked up per request when finding what the index already holds.
_LOOKUP_CHUNK = 10_000


@dataclass(frozen=True)
class FailedBatch:
    """Passages that could not be encoded: their ids and the error (they are not in the index; a re-run retries them)."""

    ids: list[str]
    error: str


@dataclass(frozen=True)
class RayIndexingResult:
    """What a distributed build did: documents added, replaced and skipped, and the batches that failed."""

    added: int = 0
    updated: int = 0
    skipped: int = 0
    failed: list[FailedBatch] = field(default_factory=list)

    @property
    def failed_ids(self) -> list[str]:
        return [doc_id for batch in self.failed for doc_id in batch.ids]


def index_with_ray(
    index: MultiVectorIndex,
    corpus: Any,
    *,
    language: str | None = None,
    on_existing: OnExisting = "skip",
    address: str | None = None,
    chunk_size: int = 1000,
    show_progress_bar: bool | None = None,
    **encode_options: Any,
) -> RayIndexingResult:
    """Encode ``corpus`` on a Ray cluster with the index's model and write it into ``index``.

    The distributed counterpart of :meth:`~xm_integrations.index.MultiVectorIndex.add_documents`:
    same passages, ids, languages and ``on_existing``, same index contents.

    Args:
        index: Any index opened with the :class:`~xm_integrations.ColBERTXM` to encode with.
        corpus: A Ray Dataset, a Parquet or JSON-lines path readable from every node, or an
            iterable of passages (see :func:`~xm_integrations.distributed.passage_dataset`).
        language: Adapter of passages without their own: a code, ``"auto"`` or None.
        on_existing: ``"skip"`` (the default: a re-run resumes), ``"upsert"`` or ``"error"``.
        address: The Ray cluster (``"ray://host:10001"``, ``"auto"``...); None: ``RAY_ADDRESS``
            or a local one. An already connected session is used as is.
        chunk_size: Documents per index commit.
        show_progress_bar: A bar over written passages (and Ray Data's own).
        encode_options: :func:`~xm_integrations.distributed.encode_with_ray`'s options
            (``num_actors``, ``num_gpus``, ``batch_size``, ...).

    Returns:
        Counts, and the batches that failed with their ids and error.

    Raises:
        DuplicateIdError: with ``on_existing="error"``, before anything is encoded.
    """
    model = index._require_model("index_with_ray")
    index._check_on_existing(on_existing)
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    ray = connect(address)
    if not _show_progress(show_progress_bar):  # quiet: no bars, and none of Ray Data's INFO lines about them
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ray.data.DataContext.get_current().enable_progress_bars = False
    corpus, total, present = _pending_corpus(index, corpus, on_existing)
    result = RayIndexingResult(skipped=len(present) if on_existing == "skip" else 0)
    if total == 0:
        return result
    skip = present if on_existing == "skip" and not isinstance(corpus, list) else None
    encode_options.setdefault("vector_dtype", "float16")  # what the index stores: the same rounding, half the traffic
    encoded = encode_with_ray(corpus, model, language=language, skip_ids=skip, **encode_options)
    with tqdm(total=total, unit="passage", desc="Indexing", disable=not _show_progress(show_progress_bar)) as bar:
        result = _write_stream(index, _chunks(encoded.iter_batches(batch_size=None, batch_format="pyarrow"), chunk_size),
                               on_existing, result, bar)
    index._after_write()
    return result


def add_encoded(
    index: MultiVectorIndex,
    encoded: Any,
    *,
    on_existing: OnExisting = "skip",
    chunk_size: int = 1000,
    show_progress_bar: bool | None = None,
) -> RayIndexingResult:
    """Write documents encoded by :func:`~xm_integrations.distributed.encode_with_ray` into ``index``.

    ``encoded`` is that dataset, or a folder (or file) of the Parquet files it wrote
    (``encode_with_ray(...).write_parquet(folder)``), read here with pyarrow, without Ray. The
    files carry the encoder's record: an index created from them records it, an existing index
    refuses them if its model differs. Rows that failed to encode are returned, not written.

    Raises:
        IndexFormatError: files not written by ``encode_with_ray`` (no record in their schema).
        IndexModelMismatchError: the files' encoder does not match the index's model.
    """
    index._check_on_existing(on_existing)
    if isinstance(encoded, (str, os.PathLike)):
        batches = _parquet_batches(os.fspath(encoded), chunk_size)
    else:
        batches = encoded.iter_batches(batch_size=None, batch_format="pyarrow")
    with tqdm(unit="passage", desc="Indexing", disable=not _show_progress(show_progress_bar)) as bar:
        result = _write_stream(index, _chunks(batches, chunk_size), on_existing, RayIndexingResult(), bar)
    index._after_write()
    return result


def _pending_corpus(index: MultiVectorIndex, corpus: Any, on_existing: OnExisting) -> tuple[Any, int | None, set[str]]:
    """The corpus to encode (a list of passage dicts when it was an iterable), its size if known, and the ids present."""
    from ray.data import Dataset

    if isinstance(corpus, (str, os.PathLike, Dataset)):
        dataset = passage_dataset(corpus)
        present = _present_ids(index, _dataset_ids(dataset))
        if present and on_existing == "error":
            raise index._duplicates_error(present)
        return dataset, None, present
    passages = [to_passage(passage, position) for position, passage in enumerate(corpus)]
    check_unique_ids([passage.id for passage in passages])
    present = _present_ids(index, iter([[passage.id for passage in passages]]))
    if present and on_existing == "error":
        raise index._duplicates_error(present)
    if on_existing == "skip":
        passages = [passage for passage in passages if passage.id not in present]
    rows = [{**passage.metadata, "id": passage.id, "text": passage.text, "language": passage.language}
            for passage in passages]
    return rows, len(rows), present


def _dataset_ids(dataset: Any) -> Iterator[list[str]]:
    for batch in dataset.select_columns(["id"]).iter_batches(batch_size=_LOOKUP_CHUNK, batch_format="pyarrow"):
        yield batch.column("id").to_pylist()


def _present_ids(index: MultiVectorIndex, id_chunks: Iterable[Sequence[str]]) -> set[str]:
    if index.record is None:
        return set()
    present: set[str] = set()
    for ids in id_chunks:
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            present |= index._existing_ids(list(ids[start:start + _LOOKUP_CHUNK]))
    return present


def _chunks(tables: Iterable[Any], chunk_size: int) -> Iterator[Any]:
    """Arrow tables regrouped into tables of about ``chunk_size`` rows (one index commit each)."""
    import pyarrow as pa

    pending: list[Any] = []
    rows = 0
    for table in tables:
        if table.num_rows:
            pending.append(table)
            rows += table.num_rows
        if rows >= chunk_size:
            yield pa.concat_tables(pending, promote_options="default")
            pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending, promote_options="default")


def _write_stream(index: MultiVectorIndex, tables: Iterable[Any], on_existing: OnExisting,
                  result: RayIndexingResult, bar: Any) -> RayIndexingResult:
    added, updated, skipped, failed = result.added, result.updated, result.skipped, list(result.failed)
    for table in tables:
        record = _table_record(table)
        if index.record is not None:
            index.record.check_compatible(record, index.location)
        batch, errors = _document_batch(table, record.dim)
        failed.extend(errors)
        if len(batch):
            written: AddResult = index._write_encoded(batch, on_existing, record)
            added, updated, skipped = added + written.added, updated + written.updated, skipped + written.skipped
        bar.update(table.num_rows)
    return RayIndexingResult(added, updated, skipped, failed)


def _table_record(table: Any) -> IndexModelRecord:
    raw = (table.schema.metadata or {}).get(RECORD_METADATA_KEY)
    if raw is None:
        raise IndexFormatError("these encoded documents carry no model record: they were not written by "
                               "encode_with_ray; encode the corpus with it (or add the vectors with index.add).")
    return IndexModelRecord.from_json(raw, "the encoded documents")


def _document_batch(table: Any, dim: int) -> tuple[DocumentBatch, list[FailedBatch]]:
    """The rows of an encoded table that have vectors, as a :class:`DocumentBatch`, and the failed ones by error."""
    errors = table.column("error").to_pylist()
    failed: dict[str, list[str]] = {}
    for doc_id, error in zip(table.column("id").to_pylist(), errors):
        if error is not None:
            failed.setdefault(error, []).append(doc_id)
    ok = table.filter([error is None for error in errors])
    packed = packed_from_arrow(ok.column("vectors"), dim)
    vectors = pack_float16([packed[i] for i in range(len(packed))], dim) if len(packed) else packed
    batch = DocumentBatch(ok.column("id").to_pylist(), vectors, ok.column("language").to_pylist(),
                          ok.column("text").to_pylist(), [json.loads(m or "{}") for m in ok.column("metadata").to_pylist()])
    return batch, [FailedBatch(ids, error) for error, ids in failed.items()]


def _parquet_batches(path: str, chunk_size: int) -> Iterator[Any]:
    """The Parquet files under ``path`` as Arrow tables with each file's schema metadata (the record)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                   if name.endswith(".parquet")) if os.path.isdir(path) else [path]
    if not files:
        raise IndexFormatError(f"{path} holds no .parquet files; give the folder encode_with_ray(...).write_parquet wrote.")
    for file in files:
        parquet = pq.ParquetFile(file)
        metadata = parquet.schema_arrow.metadata
        for batch in parquet.iter_batches(batch_size=chunk_size):
            yield pa.Table.from_batches([batch]).replace_schema_metadata(metadata)
