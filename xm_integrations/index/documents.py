"""The documents an index stores, independent of the backend: passages in, batches of vectors out.

A passage is a string or a mapping with a ``"text"`` and, optionally, ``"id"``, ``"language"`` and
any other key, kept as its metadata (the JSON-lines layout the command line reads). Every backend
writes :class:`DocumentBatch` objects and returns :class:`StoredDocument` objects, so the model
logic of :class:`~xm_integrations.index.MultiVectorIndex` never sees a storage format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xm_integrations.errors import ArgumentTypeError, DuplicateIdError, InvalidArgumentError
from xm_integrations.scoring.stores import PackedTokens

__all__ = [
    "RESERVED_FIELDS",
    "DocumentBatch",
    "Passage",
    "StoredDocument",
    "check_filter",
    "iter_passage_chunks",
    "pack_float16",
    "pack_tokens",
    "packed_from_arrow",
    "token_matrices",
]

#: Field names an index uses itself; metadata cannot use them (nor names starting with ``_``).
RESERVED_FIELDS = frozenset({"id", "text", "language", "vectors", "metadata"})

#: Metadata keys that can be filtered on: identifiers, so that every backend can name them.
_FILTERABLE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Passage:
    """One passage to index: its id (a string), text, language (``None``: decided at encoding) and metadata."""

    id: str
    text: str
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredDocument:
    """What an index holds besides the vectors of one document."""

    id: str
    text: str | None
    language: str | None
    metadata: dict[str, Any]


@dataclass
class DocumentBatch:
    """Documents ready to be written in one commit: ids, float16 token vectors, languages, texts, metadata."""

    ids: list[str]
    vectors: PackedTokens
    languages: list[str | None]
    texts: list[str | None]
    metadata: list[dict[str, Any]]

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("languages", "texts", "metadata"):
            if len(getattr(self, name)) != n:
                raise InvalidArgumentError(f"{name} has {len(getattr(self, name))} entries for {n} ids; give one per id.")
        if len(self.vectors) != n:
            raise InvalidArgumentError(f"{len(self.vectors)} embeddings for {n} ids; give one (tokens, dim) array per id.")
        check_unique_ids(self.ids)
        for entry in self.metadata:
            check_metadata(entry)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: Sequence[int]) -> DocumentBatch:
        """The documents at positions ``keep``, in that order."""
        return DocumentBatch(
            [self.ids[i] for i in keep], pack_float16([self.vectors[i] for i in keep], self.vectors.dim),
            [self.languages[i] for i in keep], [self.texts[i] for i in keep], [self.metadata[i] for i in keep],
        )


def _checked_matrices(embeddings: Sequence[Any], dim: int | None) -> list[torch.Tensor]:
    """``(tokens_i, dim)`` tensors (arrays become CPU tensors; tensors stay where they are), shapes checked."""
    tensors = []
    for position, embedding in enumerate(embeddings):
        tensor = embedding if isinstance(embedding, torch.Tensor) else torch.as_tensor(np.asarray(embedding))
        if tensor.dim() != 2 or (dim is not None and tensor.shape[1] != dim) or not tensor.is_floating_point():
            raise InvalidArgumentError(
                f"embedding {position} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; each one needs to be "
                f"a floating-point (tokens, {dim or 'dim'}) array."
            )
        dim = tensor.shape[1]
        tensors.append(tensor.detach())
    if not tensors:
        raise InvalidArgumentError("no embeddings given.")
    return tensors


def _check_finite(tensor: torch.Tensor) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise InvalidArgumentError("embeddings hold NaN or infinite values.")


def token_matrices(embeddings: Sequence[Any], dim: int | None = None) -> list[torch.Tensor]:
    """``(tokens_i, dim)`` tensors or arrays as CPU tensors of their own dtype, checked.

    Raises:
        InvalidArgumentError: nothing given, an embedding that is not 2-D, dims that differ, or a
            non-finite value.
    """
    tensors = [tensor.cpu() for tensor in _checked_matrices(embeddings, dim)]
    for tensor in tensors:
        _check_finite(tensor)
    return tensors


def pack_tokens(embeddings: Sequence[Any], dim: int | None = None, dtype: torch.dtype = torch.float16) -> PackedTokens:
    """Document embeddings (see :func:`token_matrices`) as one :class:`PackedTokens` of ``dtype`` on the CPU.

    Embeddings on one device (a GPU's) are packed, checked and cast there and copied to the host
    once: one transfer per chunk, of the stored width, rather than one synchronised copy per
    document followed by a cast on the host.

    Raises:
        InvalidArgumentError: as :func:`token_matrices`, or (float16) values beyond its range.
    """
    tensors = _checked_matrices(embeddings, dim)
    if len({tensor.device for tensor in tensors}) > 1:
        tensors = [tensor.cpu() for tensor in tensors]
    joined = torch.cat(tensors)  # mixed dtypes promote
    _check_finite(joined)
    flat = joined.to(dtype)
    if dtype == torch.float16 and not bool(torch.isfinite(flat).all()):
        raise InvalidArgumentError("embeddings hold values beyond float16's range (about 65504); normalize them.")
    offsets = torch.tensor([0, *np.cumsum([t.shape[0] for t in tensors])], dtype=torch.int64)
    return PackedTokens(flat.cpu(), offsets)


def pack_float16(embeddings: Sequence[Any], dim: int | None = None) -> PackedTokens:
    """:func:`pack_tokens` in float16, the form indexes store."""
    return pack_tokens(embeddings, dim, torch.float16)


def packed_from_arrow(column: Any, dim: int) -> PackedTokens:
    """A ``list<fixed_size_list<float>>`` Arrow column (one list of token vectors per document) as float32 :class:`PackedTokens`.

    The stored layout of LanceDB and of encoded datasets; read without a copy per document.
    """
    import pyarrow as pa

    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    flat = np.asarray(lists.values.values).reshape(-1, dim)
    flat = flat[offsets[0]:offsets[-1]].astype(np.float32)
    return PackedTokens(torch.from_numpy(flat), torch.from_numpy(offsets - offsets[0]))


def check_unique_ids(ids: Sequence[str]) -> None:
    """Raise :class:`DuplicateIdError` naming the first id given twice."""
    seen: set[str] = set()
    for doc_id in ids:
        if doc_id in seen:
            raise DuplicateIdError(f"document id {doc_id!r} appears twice in one batch; ids must be unique.")
        seen.add(doc_id)


def check_metadata(metadata: Mapping[str, Any]) -> None:
    """Raise unless ``metadata`` is a mapping of string keys that are not reserved (values: anything JSON holds)."""
    if not isinstance(metadata, Mapping):
        raise ArgumentTypeError(f"metadata must be a dict, got {type(metadata).__name__}.")
    for key in metadata:
        if not isinstance(key, str) or key in RESERVED_FIELDS or key.startswith("_"):
            raise InvalidArgumentError(
                f"metadata key {key!r} is reserved (the index uses {sorted(RESERVED_FIELDS)} and names starting "
                f"with '_'); rename it."
            )


def is_filterable_key(key: str) -> bool:
    """Whether ``key`` names a metadata field that filters can use (an identifier: letters, digits, ``_``)."""
    return bool(_FILTERABLE_KEY.match(key))


def scalar_value(value: Any) -> Any:
    """A metadata value as a filterable field stores it: strings, numbers and booleans; anything else None."""
    return value if isinstance(value, (str, int, float, bool)) else None


def new_field_kinds(metadata: Sequence[Mapping[str, Any]], known: Iterable[str]) -> dict[str, str]:
    """``{key: "bool" | "int" | "float" | "str"}`` for each filterable metadata key not in ``known`` that has a scalar value.

    A backend gives such keys a typed field (a column, a payload index) when they first appear;
    integers and floats together make a ``"float"`` field.

    Raises:
        InvalidArgumentError: a new key whose values in ``metadata`` mix other types.
    """
    known = set(known)
    kinds: dict[str, set[type]] = {}
    for entry in metadata:
        for key, value in entry.items():
            if key not in known and is_filterable_key(key) and scalar_value(value) is not None:
                kinds.setdefault(key, set()).add(type(value))
    fields = {}
    for key, types in kinds.items():
        for kind, allowed in (("bool", {bool}), ("int", {int}), ("float", {int, float}), ("str", {str})):
            if types <= allowed:
                fields[key] = kind
                break
        else:
            raise InvalidArgumentError(f"metadata {key!r} mixes types ({', '.join(sorted(t.__name__ for t in types))}) "
                                       f"in one batch; keep one type per key.")
    return fields


def check_filter(filter: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """A filter ``{field: value or list of values}`` as ``{field: [values]}`` (a list means any of them).

    ``field`` is ``"id"``, ``"language"`` or a metadata key; values are strings, numbers or booleans.

    Raises:
        InvalidArgumentError: an unusable key or value, or an empty list (it would match nothing).
    """
    if filter is None:
        return {}
    if not isinstance(filter, Mapping):
        raise ArgumentTypeError(f"filter must be a dict {{field: value or [values]}}, got {type(filter).__name__}.")
    checked = {}
    for key, value in filter.items():
        if not isinstance(key, str) or not (key in ("id", "language") or is_filterable_key(key)) or key in (
                "text", "vectors", "metadata"):
            raise InvalidArgumentError(f"cannot filter on {key!r}: use 'id', 'language' or a metadata key made of "
                                       f"letters, digits and '_'.")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            raise InvalidArgumentError(f"filter on {key!r} has an empty list of values; it would match nothing.")
        for item in values:
            if not isinstance(item, (str, int, float, bool)) or (isinstance(item, float) and not math.isfinite(item)):
                raise InvalidArgumentError(f"filter value {item!r} for {key!r}: use strings, numbers or booleans.")
        checked[key] = values
    return checked


def iter_passage_chunks(passages: Iterable[Any], chunk_size: int) -> Iterator[list[Passage]]:
    """Group ``passages`` into lists of at most ``chunk_size`` :class:`Passage`, reading the input lazily.

    A passage without an id gets its 0-based position in ``passages`` (as a string), so that a
    re-run over the same input finds the ids it already wrote.

    Raises:
        ArgumentTypeError / InvalidArgumentError: a passage that is neither a string nor a mapping
            with a string ``"text"`` (the message gives its position).
    """
    if isinstance(passages, (str, bytes)) or isinstance(passages, Mapping):
        raise ArgumentTypeError("passages must be an iterable of passages (strings or dicts), not a single passage.")
    chunk: list[Passage] = []
    for position, passage in enumerate(passages):
        chunk.append(to_passage(passage, position))
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def to_passage(passage: Any, position: int) -> Passage:
    """One input passage (a string, or a mapping with ``text`` and optional ``id``/``language``/metadata) as a :class:`Passage`."""
    if isinstance(passage, str):
        return Passage(str(position), passage)
    if not isinstance(passage, Mapping) or not isinstance(passage.get("text"), str):
        raise ArgumentTypeError(f"passage {position}: expected a string or a dict with a string 'text', "
                                f"got {type(passage).__name__}.")
    language = passage.get("language")
    if language is not None and not isinstance(language, str):
        raise ArgumentTypeError(f"passage {position}: 'language' must be a string such as 'fr' or 'auto'.")
    doc_id = passage.get("id")
    if doc_id is not None and not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise ArgumentTypeError(f"passage {position}: 'id' must be a string or an integer, got {doc_id!r}.")
    metadata = {key: value for key, value in passage.items() if key not in ("id", "text", "language")}
    check_metadata(metadata)
    return Passage(str(position) if doc_id is None else str(doc_id), passage["text"], language, metadata)
