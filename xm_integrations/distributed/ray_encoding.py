"""Encode a corpus with ColBERT-XM on a Ray cluster (Ray Data): one model per actor, one actor per GPU.

:func:`encode_with_ray` turns a corpus into a lazy Ray Dataset of encoded documents, one row per
passage, in the layout every index ingests (:data:`ENCODED_COLUMNS`): ``id``, ``text``,
``language`` (the adapter code the passage was encoded with, ``"auto"`` resolved), ``metadata``
(JSON), ``vectors`` (the token vectors, float32 or float16, as a list of ``dim``-sized lists)
and ``error``.
Actors load the checkpoint once (by name or path, so it must be reachable from every node: a Hub
id, or a folder on shared storage) and check it against the encoder the driver holds, so that a
node with another copy of the checkpoint cannot write incomparable vectors. Each batch goes
through ``encode_document`` (the fast path). A batch that fails is halved and retried until the
failing passages stand alone: they keep their rows, with empty vectors and the error, so they are
reported by id and every other passage is encoded.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError, MissingExtraError
from xm_integrations.index.documents import RESERVED_FIELDS, pack_tokens, to_passage
from xm_integrations.index.record import IndexModelRecord
from xm_integrations.scoring.stores import PackedTokens

__all__ = ["ENCODED_COLUMNS", "RECORD_METADATA_KEY", "encode_with_ray", "passage_dataset"]

#: Columns of an encoded dataset, in order.
ENCODED_COLUMNS = ("id", "text", "language", "metadata", "vectors", "error")
#: Schema-metadata key of every encoded block (and Parquet file): the encoder's :class:`IndexModelRecord` as JSON.
RECORD_METADATA_KEY = b"xm_index"
#: Passages per Ray batch: large, since each batch is one encode_document call (the fast path sorts by length
#: and overlaps tokenization within one call only (benchmarks/bench_distributed.py compares sizes).
DEFAULT_RAY_BATCH_SIZE = 8192


def import_ray() -> Any:
    """``ray`` (with Ray Data), or a :class:`MissingExtraError` that names the install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("distributed encoding needs Ray Data: pip install 'xm-integrations[ray]' "
                                "(or pip install 'ray[data]>=2.60').") from exc
    return ray


def connect(address: str | None = None) -> Any:
    """Connect to the Ray cluster at ``address`` (None: ``RAY_ADDRESS``, a running local cluster, or a new local one)."""
    ray = import_ray()
    if not ray.is_initialized():
        with warnings.catch_warnings():
            # Ray starts a local cluster's processes with fork + exec: LanceDB's warning about forking
            # while its runtime is loaded concerns children that keep running Python, which these do not.
            warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    return ray


def passage_dataset(corpus: Any) -> Any:
    """``corpus`` as a Ray Dataset with the columns ``id``, ``text``, ``language`` and ``metadata`` (JSON).

    ``corpus`` is a Ray Dataset or a Parquet / JSON-lines path or URI readable from every node
    (columns ``id``, ``text``, optional ``language``, any other column kept as metadata), or an
    iterable of passages as :meth:`~xm_integrations.index.MultiVectorIndex.add_documents` takes
    them, read on the driver (ids default to positions, as there).

    Raises:
        InvalidArgumentError: a dataset or file without ``id`` or ``text`` columns.
        ArgumentTypeError: a passage that is neither a string nor a dict with a ``text``.
    """
    ray = import_ray()
    if isinstance(corpus, (str, os.PathLike)):
        path = os.fspath(corpus)
        reader = ray.data.read_json if path.endswith((".jsonl", ".json", ".jsonl.gz")) else ray.data.read_parquet
        corpus = reader(path, **({"lines": True} if reader is ray.data.read_json else {}))
    if isinstance(corpus, ray.data.Dataset):
        columns = corpus.columns() or []
        missing = [name for name in ("id", "text") if name not in columns]
        if missing:
            raise InvalidArgumentError(f"the corpus dataset has no {' or '.join(map(repr, missing))} column (columns: "
                                       f"{', '.join(columns)}); distributed encoding needs both: ids cannot be "
                                       f"positions when the corpus is read in parallel.")
        return corpus.map_batches(_normalized_batch, batch_format="pyarrow", zero_copy_batch=True)
    if isinstance(corpus, (bytes, Mapping)) or not isinstance(corpus, Iterable):
        raise ArgumentTypeError(f"corpus must be a Ray Dataset, a path, or an iterable of passages, got "
                                f"{type(corpus).__name__}.")
    rows = [_row(to_passage(passage, position)) for position, passage in enumerate(corpus)]
    return ray.data.from_items(rows)


def _row(passage: Any) -> dict[str, Any]:
    return {"id": passage.id, "text": passage.text, "language": passage.language,
            "metadata": json.dumps(passage.metadata, ensure_ascii=False)}


def _normalized_batch(table: Any) -> Any:
    """A block of any corpus layout as ``id`` (string), ``text``, ``language`` and ``metadata`` (JSON of the other columns)."""
    import pyarrow as pa

    rows = table.to_pylist()
    extra = [name for name in table.column_names if name not in ("id", "text", "language")]
    if extra == ["metadata"] and pa.types.is_string(table.schema.field("metadata").type):
        metadata = [row["metadata"] or "{}" for row in rows]  # already ours
    else:
        metadata = [json.dumps({name: row[name] for name in extra if row[name] is not None and name not in RESERVED_FIELDS},
                               ensure_ascii=False, default=str) for row in rows]
    return pa.table({
        "id": pa.array([None if row.get("id") is None else str(row["id"]) for row in rows], pa.string()),
        "text": pa.array([row.get("text") for row in rows], pa.string()),
        "language": pa.array([row.get("language") for row in rows], pa.string()),
        "metadata": pa.array(metadata, pa.string()),
    })


class DocumentEncoder:
    """A Ray Data actor: loads ColBERT-XM once, then encodes batches of passages (a callable class for ``map_batches``).

    Args:
        model_name_or_path / model_kwargs: What the actor loads (``ColBERTXM(name, **model_kwargs)``).
        expected_record: The JSON :class:`IndexModelRecord` of the driver's encoder; the loaded model must match it.
        language: Adapter of passages without their own (a code, ``"auto"`` or None for the default).
        encode_batch_size: The most passages per forward pass (None: the fast path's token budget).
        skip_ids: An object ref to a set of ids not to encode (already indexed).
        num_threads: torch CPU threads in the actor.
        vector_dtype: ``"float32"`` or ``"float16"`` (what indexes store: half the transfer and files).
    """

    def __init__(self, model_name_or_path: str, model_kwargs: dict[str, Any], expected_record: str,
                 language: str | None, encode_batch_size: int | None, skip_ids: Any = None,
                 num_threads: int | None = None, vector_dtype: str = "float32") -> None:
        from xm_integrations import ColBERTXM

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model = ColBERTXM(model_name_or_path, **model_kwargs)
        record = IndexModelRecord.from_json(expected_record, "the driver's encoder")
        record.check_compatible(IndexModelRecord.from_model(self.model), f"the checkpoint {model_name_or_path} on this node")
        self.record_json = expected_record.encode()
        self.language = language
        self.options = {} if encode_batch_size is None else {"batch_size": encode_batch_size}
        self.vector_dtype = vector_dtype
        self.skip = None
        if skip_ids is not None:
            import ray

            self.skip = _string_array(ray.get(skip_ids))  # built once: batches only look ids up in it

    def __call__(self, table: Any) -> Any:
        if self.skip is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=self.skip)))
        rows = table.to_pylist()
        if not rows:
            return self._table([], [], None)
        import pyarrow as pa

        return pa.concat_tables(self._encode(rows))

    def _encode(self, rows: list[dict]) -> list[Any]:
        """Encoded tables for ``rows``; a failing group is halved until the failing rows stand alone."""
        try:
            codes = self.model._resolve_input_languages([row["language"] or self.language for row in rows], len(rows),
                                                        lambda positions: [rows[i]["text"] for i in positions])
            vectors = self.model.encode_document([row["text"] for row in rows], language=codes,
                                                 show_progress_bar=False, **self.options)
            # Packed and cast on the encoder's device: one host copy per batch, of the stored width.
            packed = pack_tokens(vectors, self.model.get_embedding_dimension(), getattr(torch, self.vector_dtype))
            return [self._table(rows, codes, packed)]
        except Exception as exc:  # reported by id; the other rows (and batches) go on
            if len(rows) > 1:
                middle = len(rows) // 2
                return self._encode(rows[:middle]) + self._encode(rows[middle:])
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            return [self._table(rows, [row["language"] for row in rows], None, error)]

    def _table(self, rows: list[dict], codes: list[str | None], packed: PackedTokens | None, error: str | None = None
               ) -> Any:
        """One Arrow table of :data:`ENCODED_COLUMNS`; ``packed`` None gives every row empty vectors."""
        import numpy as np
        import pyarrow as pa

        dim, dtype = self.model.get_embedding_dimension(), np.dtype(self.vector_dtype)
        if packed is None:
            flat, offsets = np.zeros((0, dim), dtype=dtype), np.zeros(len(rows) + 1, dtype=np.int32)
        else:
            flat, offsets = packed.tokens.numpy(), packed.offsets.numpy().astype(np.int32)
        tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.from_numpy_dtype(dtype)), dim)
        columns = {
            "id": pa.array([row["id"] for row in rows], pa.string()),
            "text": pa.array([row["text"] for row in rows], pa.string()),
            "language": pa.array(codes, pa.string()),
            "metadata": pa.array([row["metadata"] for row in rows], pa.string()),
            "vectors": pa.ListArray.from_arrays(pa.array(offsets), tokens),
            "error": pa.array([error] * len(rows), pa.string()),
        }
        table = pa.table(columns)
        return table.replace_schema_metadata({RECORD_METADATA_KEY: self.record_json})


def _check_room_to_read(resources: Mapping[str, float], actors: int, cpus: float) -> None:
    """Refuse actors that would hold every CPU of the cluster: the corpus's read tasks could then never run."""
    total = resources.get("CPU", 0)
    if total and actors * cpus >= total:
        raise InvalidArgumentError(
            f"{actors} encoder actor(s) x {cpus:g} CPU(s) would hold all {total:g} CPUs of the Ray cluster, leaving "
            f"none to read the corpus (the job would wait forever); lower num_actors or num_cpus."
        )


def _check_actors_fit(nodes: Sequence[Mapping[str, Any]], actors: int, cpus: float, gpus: float) -> None:
    """Refuse actors that no node can hold, or more GPU actors than the cluster has GPUs for: Ray would
    queue them forever instead of failing."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive", True)]
    if not alive:
        return
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in alive):
        largest = max(alive, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)))
        raise InvalidArgumentError(
            f"one encoder actor asks for {cpus:g} CPU(s) and {gpus:g} GPU(s), but the largest node of the Ray cluster "
            f"has {largest.get('CPU', 0):g} CPU(s) and {largest.get('GPU', 0):g} GPU(s) (the job would wait "
            f"forever); lower num_cpus or num_gpus, or start Ray with more (ray start --num-cpus N)."
        )
    total_gpus = sum(node.get("GPU", 0) for node in alive)
    if gpus and actors * gpus > total_gpus:
        raise InvalidArgumentError(
            f"{actors} encoder actor(s) x {gpus:g} GPU(s) need more than the {total_gpus:g} GPU(s) of the Ray cluster "
            f"(the job would wait forever); lower num_actors or num_gpus."
        )


def _string_array(values: Any) -> Any:
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def encode_with_ray(
    corpus: Any,
    model: Any,
    *,
    language: str | None = None,
    num_actors: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    batch_size: int = DEFAULT_RAY_BATCH_SIZE,
    encode_batch_size: int | None = None,
    model_name_or_path: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    skip_ids: Iterable[str] | None = None,
    vector_dtype: Literal["float32", "float16"] = "float32",
) -> Any:
    """Encode ``corpus`` on the connected Ray cluster: a lazy Ray Dataset of encoded documents (:data:`ENCODED_COLUMNS`).

    Nothing runs until the dataset is consumed (``iter_batches``, ``write_parquet``, or
    :func:`~xm_integrations.distributed.index_with_ray`).

    Args:
        corpus: See :func:`passage_dataset`.
        model: The driver's :class:`~xm_integrations.ColBERTXM`: the actors load the same checkpoint
            (its name or path and revision) and must produce the same record.
        language: Adapter of passages without their own: a code, ``"auto"`` (detected per
            passage, in the actors) or None for the model's default.
        num_actors: Encoder actors (default: one per GPU in the cluster, else one per node).
        num_gpus / num_cpus: Resources per actor (default: 1 GPU where the cluster has GPUs, and
            1 CPU); torch runs on that many CPU threads in the actor (Ray sets one per CPU).
            One actor leaves the GPU idle while it tokenizes and packs a batch: three per GPU
            (``num_gpus=0.33``, a few CPUs each) keep it busy (``docs/distributed.md``).
        batch_size: Passages per Ray batch (per ``encode_document`` call).
        encode_batch_size: The most passages per forward pass inside a batch.
        model_name_or_path / model_kwargs: What the actors load, when it differs from the
            driver's path (another mount point of the same checkpoint), and ``ColBERTXM`` arguments.
        skip_ids: Ids not to encode (the actors drop them before encoding).
        vector_dtype: ``"float32"`` (the model's output) or ``"float16"`` (what the indexes store:
            half the object-store traffic and Parquet bytes; :func:`index_with_ray` uses it).

    Raises:
        MissingExtraError: Ray Data is not installed.
        InvalidArgumentError: unusable sizes, actors the cluster cannot hold, or a model without a
            name or path the actors can load.
    """
    ray = import_ray()
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if vector_dtype not in ("float32", "float16"):
        raise InvalidArgumentError(f"vector_dtype must be 'float32' or 'float16', got {vector_dtype!r}.")
    record = IndexModelRecord.from_model(model)
    name = model_name_or_path or record.name_or_path
    if not name:
        raise InvalidArgumentError("the model has no name or path for the actors to load; pass model_name_or_path=.")
    resources = ray.cluster_resources() if ray.is_initialized() else {}
    gpus = num_gpus if num_gpus is not None else (1 if resources.get("GPU", 0) >= 1 else 0)
    cpus = num_cpus if num_cpus is not None else 1
    actors = num_actors or (int(resources["GPU"] // gpus) if gpus else max(1, len(ray.nodes()) if ray.is_initialized() else 1))
    if ray.is_initialized():
        _check_actors_fit(ray.nodes(), actors, cpus, gpus)
    dataset = passage_dataset(corpus)
    if isinstance(corpus, (str, os.PathLike, ray.data.Dataset)):  # read by tasks that need a CPU of their own
        _check_room_to_read(resources, actors, cpus)
    kwargs = {"device": "cuda" if gpus else "cpu", "language": getattr(model, "default_language", None),
              **({"revision": record.revision} if record.revision else {}), **dict(model_kwargs or {})}
    skip = set(skip_ids or ())
    return dataset.map_batches(
        DocumentEncoder,
        fn_constructor_kwargs={"model_name_or_path": name, "model_kwargs": kwargs, "expected_record": record.to_json(),
                               "language": language, "encode_batch_size": encode_batch_size,
                               "skip_ids": ray.put(skip) if skip else None,
                               "num_threads": max(1, int(cpus)), "vector_dtype": vector_dtype},
        batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus or None, num_cpus=cpus,
    )
