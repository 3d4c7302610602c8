"""Late-interaction (MaxSim) scoring for ColBERT-XM, and BGE-M3-style mean MaxSim.

``score(q, d) = sum_i max_j <q_i, d_j>`` over the real tokens ``i`` of the query and ``j`` of the
document (``reduce="sum"``, ColBERT), or the same divided by the query's real token count
(``reduce="mean"``, the BGE-M3 ColBERT head).

Why not just call :func:`sentence_transformers.util.similarity.maxsim`? It is correct and we use it
as a cross-check in the tests, but it does not fit retrieval over a large document store:

* **Speed.** It materialises a ``(queries, docs, q_tokens, d_tokens)`` block of up to 100 M
  elements (~400 MB), derives or applies the padding mask with passes over the whole block and
  the documents, and reduces it out of cache. Here documents are scored in cache-sized chunks
  with reused buffers; the query side is flattened to its real tokens (query padding costs
  nothing); padded documents get their padding rows overwritten with ``index_fill_`` (touching
  only the padding); ragged documents (list / :class:`PackedTokens`) are never padded at all: the
  product runs on their real tokens and each document's maxima are a ``segment_reduce``. Measured
  in ``docs/maxsim.md``: 1 M documents of 32 tokens on an H200 in 18 ms vs 401 ms (fp32); on the
  2-core development CPU in 2.9 s vs 24.7 s wall (fp32), 2-12x less CPU time across input forms
  and dtypes.
* **Semantics.** Stock gives a document without tokens ``-1e9``; we give ``0.0`` (the
  empty sum, and what a zero-vector document would score), and a query without tokens scores
  ``0.0`` too. Stock infers padding from all-zero rows when a 3-D tensor comes without a mask; we
  treat every row as real unless the mask says otherwise (no guessing).
* **Half precision.** Stock multiplies in bf16/fp16, so every similarity is rounded to the half
  grid (relative 2^-9 / 2^-12) before the max. We accumulate in float32: each document chunk is
  upcast before the product on CPU (chunked scoring of 50k bf16 documents measured within 5% of
  the same loop on the native bf16 product, which would round every similarity), and on CUDA ``torch.mm(..., out_dtype=torch.float32)`` is used where
  the installed torch has it (fp32 accumulation, fp32 output), else the chunk is upcast.
* **Store layout.** :class:`PackedTokens` (all token rows concatenated plus offsets) is the layout
  a document index keeps on disk or in memory without padding; it is scored without first building
  a list of a million tensors.

Memory is bounded by a per-chunk working-set budget (``memory_budget`` bytes, or explicit
``chunk_size`` / ``query_chunk_size``): one 32x128 query against 1 M documents of 32 tokens never
needs more than the budget plus the ``(n_queries, n_documents)`` result, instead of the full
``32 x 32 x 1M`` similarity tensor (4 GiB in fp32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Union

import numpy as np
import torch
from torch import Tensor

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "DEFAULT_MEMORY_BUDGET_CPU",
    "DEFAULT_MEMORY_BUDGET_CPU_COPY",
    "DEFAULT_MEMORY_BUDGET_CUDA",
    "PackedTokens",
    "TokenEmbeddings",
    "maxsim",
    "maxsim_pairwise",
    "pack_token_embeddings",
    "pad_token_embeddings",
]

#: Default per-chunk working set on CPU when the product reads the documents in place (padded or
#: packed float32). The similarity block of a chunk should stay in cache while it is max-reduced,
#: and every allocation stays under glibc's 32 MiB mmap threshold. Measured on the development
#: machine (2 cores, 2 MiB L2 per core, one thread): 16-64 MiB score 50k x 32-token documents in the
#: same CPU time (+-3%); 4 MiB is ~15-35% and 128 MiB ~20% slower.
DEFAULT_MEMORY_BUDGET_CPU = 32 * 2**20
#: Default per-chunk working set on CPU when each chunk is first copied (a list is concatenated,
#: half precision is upcast): the copy should still be in cache when the product reads it. Measured
#: there: bf16 100k x 32 tokens 631 ms CPU at 4 MiB vs 848 ms at 32 MiB; a list 983 vs 1135 ms.
DEFAULT_MEMORY_BUDGET_CPU_COPY = 4 * 2**20
#: Default per-chunk working set on CUDA: larger, since the product only saturates the GPU with
#: hundreds of thousands of document tokens per launch (the chunk loop never syncs with the host, so
#: launches overlap the GPU work). Measured on an H200, one query against 1M x 32-token fp32
#: documents: 38 ms / +42 MiB at 32 MiB, 16-18 ms / +63 MiB at 128 MiB, 12 ms / +139 MiB at 512 MiB
#: (stock sentence-transformers: 230-400 ms / +90 MiB).
DEFAULT_MEMORY_BUDGET_CUDA = 128 * 2**20

ReduceMode = Literal["sum", "mean"]

_NEG_INF = float("-inf")


class _Workspace:
    """Reusable flat buffers handed out as views, so the chunk loop allocates nothing per chunk.

    Not cosmetic on CPU: a block above glibc's mmap threshold (32 MiB at most) is mmapped fresh on
    every allocation, and first-touch page faults of a fresh block cost about as much as the product
    that fills it (measured ~1.4 us per 4 KiB page on the development VM)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=self.device)
            self.buffers[name] = buf
        return buf[:numel].view(shape)


# --------------------------------------------------------------------------------------------------
# Token containers and padding helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedTokens:
    """Variable-length token embeddings stored without padding: ``tokens[offsets[i]:offsets[i+1]]``
    are the token rows of item ``i``.

    This is the layout a document store keeps (one ``(total_tokens, dim)`` matrix, memory-mappable,
    no padding waste, no per-document Python object) and the fastest input for :func:`maxsim`: when
    every item has the same length it is scored as a zero-copy ``(n, length, dim)`` view.

    Attributes:
        tokens: ``(total_tokens, dim)`` floating-point tensor.
        offsets: ``(n + 1,)`` int64 CPU tensor, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == total_tokens``. Kept on the CPU because chunk planning reads it on the
            host; a CUDA tensor given here is copied to the CPU.
    """

    tokens: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        tokens, offsets = self.tokens, self.offsets
        if isinstance(tokens, np.ndarray):
            tokens = torch.from_numpy(tokens)
        if not isinstance(offsets, Tensor):
            offsets = torch.as_tensor(np.asarray(offsets), dtype=torch.int64)
        if tokens.dim() != 2:
            raise InvalidArgumentError(f"PackedTokens.tokens must be 2-D (total_tokens, dim), got shape {tuple(tokens.shape)}.")
        if offsets.dim() != 1 or offsets.numel() < 1:
            raise InvalidArgumentError(f"PackedTokens.offsets must be 1-D with n + 1 >= 1 entries, got shape {tuple(offsets.shape)}.")
        if offsets.is_floating_point() or offsets.dtype == torch.bool:
            raise ArgumentTypeError(f"PackedTokens.offsets must be integer, got {offsets.dtype}.")
        offsets = offsets.to(device="cpu", dtype=torch.int64)
        if int(offsets[0]) != 0 or int(offsets[-1]) != tokens.shape[0]:
            raise InvalidArgumentError(
                f"PackedTokens.offsets must start at 0 and end at total_tokens={tokens.shape[0]}, "
                f"got {int(offsets[0])} .. {int(offsets[-1])}."
            )
        if offsets.numel() > 1 and bool((offsets[1:] < offsets[:-1]).any()):
            raise InvalidArgumentError("PackedTokens.offsets must be non-decreasing.")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_list(cls, embeddings: Sequence[Tensor]) -> PackedTokens:
        """Concatenate a list of ``(tokens_i, dim)`` tensors (see :func:`pack_token_embeddings`)."""
        return pack_token_embeddings(embeddings)

    @classmethod
    def from_padded(cls, embeddings: Tensor, mask: Tensor | None = None) -> PackedTokens:
        """Drop the padding of a ``(n, max_tokens, dim)`` tensor; ``mask`` is True on real tokens
        (None: every token is real). Real tokens keep their order within each item."""
        embeddings = _as_tensor(embeddings, "embeddings")
        if embeddings.dim() != 3:
            raise InvalidArgumentError(f"expected a (n, max_tokens, dim) tensor, got shape {tuple(embeddings.shape)}.")
        n, width, _ = embeddings.shape
        if mask is None:
            offsets = torch.arange(n + 1, dtype=torch.int64) * width
            return cls(embeddings.reshape(n * width, -1), offsets)
        mask = _check_mask(mask, embeddings, "mask")
        lengths = mask.sum(dim=1).cpu()
        offsets = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        return cls(embeddings[mask], offsets)

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def __getitem__(self, index: int) -> Tensor:
        if index < 0:
            index += len(self)
        return self.tokens[int(self.offsets[index]) : int(self.offsets[index + 1])]

    @property
    def dim(self) -> int:
        return self.tokens.shape[1]

    @property
    def lengths(self) -> Tensor:
        """``(n,)`` int64 CPU tensor of token counts."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def uniform_length(self) -> int | None:
        """The common token count when every item has the same one (then the store is a plain
        ``(n, length, dim)`` view), else None."""
        n = len(self)
        if n == 0:
            return None
        total = self.tokens.shape[0]
        if total % n:
            return None
        length = total // n
        expected = torch.arange(n + 1, dtype=torch.int64) * length
        return length if torch.equal(self.offsets, expected) else None

    def to(self, *args, **kwargs) -> PackedTokens:
        """Move or cast ``tokens`` (offsets stay on the CPU)."""
        return PackedTokens(self.tokens.to(*args, **kwargs), self.offsets)


#: What :func:`maxsim` accepts on either side.
TokenEmbeddings = Union[Sequence[Tensor], Tensor, PackedTokens, np.ndarray]


def pad_token_embeddings(
    embeddings: Sequence[Tensor],
    *,
    padding_value: float = 0.0,
    dim: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Pad ragged ``(tokens_i, dim)`` tensors into ``(n, max_tokens, dim)`` plus a boolean mask
    (True = real token).

    On CPU this is ``pad_sequence`` (one memcpy per item, the fastest there); on an accelerator it
    is a single ``cat`` plus one ``index_copy_``, a constant number of kernel launches instead of one
    per item (which dominates for thousands of short items). Zero-token items are allowed.

    Args:
        embeddings: Non-empty sequence of 2-D tensors with equal ``dim``, dtype and device (or empty,
            if ``dim`` is given: returns ``(0, 0, dim)`` float32 and ``(0, 0)``).
        padding_value: Value written into padding rows. Scoring never looks at them (the mask is
            authoritative), so this only matters to other consumers.
        dim: Embedding size; required only to pad an empty sequence.
    """
    tensors = _as_tensor_list(embeddings, "embeddings")
    if not tensors:
        if dim is None:
            raise InvalidArgumentError("cannot pad an empty sequence without knowing the embedding dim: pass dim=.")
        return torch.zeros(0, 0, dim), torch.zeros(0, 0, dtype=torch.bool)
    dim0, length_list = _check_ragged(tensors, "embeddings")
    if dim is not None and dim != dim0:
        raise InvalidArgumentError(f"dim={dim} was given but the embeddings have dim {dim0}.")
    lengths = torch.tensor(length_list, dtype=torch.int64)
    device = tensors[0].device
    width = int(lengths.max())
    positions = torch.arange(width)
    mask = (positions.unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    if device.type == "cpu":
        padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=padding_value)
        if padded.shape[1] != width:  # only when every item is empty
            padded = padded.new_full((len(tensors), width, dim0), padding_value)
        return padded, mask
    flat = torch.cat(tensors, dim=0)
    padded = flat.new_full((len(tensors) * width, dim0), padding_value)
    if flat.shape[0]:
        rows = mask.reshape(-1).nonzero().squeeze(1)
        padded.index_copy_(0, rows, flat)
    return padded.view(len(tensors), width, dim0), mask


def pack_token_embeddings(embeddings: Sequence[Tensor]) -> PackedTokens:
    """Concatenate ragged ``(tokens_i, dim)`` tensors into a :class:`PackedTokens` store (one copy,
    no padding). The natural form for a document index: score it with :func:`maxsim` directly."""
    tensors = _as_tensor_list(embeddings, "embeddings")
    if not tensors:
        raise InvalidArgumentError("cannot pack an empty sequence (the embedding dim is unknown).")
    _, length_list = _check_ragged(tensors, "embeddings")
    lengths = torch.tensor(length_list, dtype=torch.int64)
    offsets = torch.zeros(len(tensors) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return PackedTokens(torch.cat(tensors, dim=0), offsets)


# --------------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------------


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ArgumentTypeError(f"`{name}` must be a torch.Tensor or numpy array, got {type(x).__name__}.")


def _check_ragged(tensors: list[Tensor], name: str) -> tuple[int, list[int]]:
    """Validate a list of ``(tokens_i, dim)`` tensors; return ``dim`` and the lengths. One pass over shapes only:
    this runs over every document of a corpus, so per-item cost matters (~0.1 us per item)."""
    shapes = [t.shape for t in tensors]
    if any(len(shape) != 2 for shape in shapes):
        i = next(i for i, shape in enumerate(shapes) if len(shape) != 2)
        raise InvalidArgumentError(f"`{name}[{i}]` must be 2-D (tokens, dim), got shape {tuple(shapes[i])}.")
    dim = shapes[0][1]
    if any(shape[1] != dim for shape in shapes):
        i = next(i for i, shape in enumerate(shapes) if shape[1] != dim)
        raise InvalidArgumentError(f"`{name}[{i}]` has dim {shapes[i][1]}, but `{name}[0]` has dim {dim}.")
    return dim, [shape[0] for shape in shapes]


def _as_tensor_list(x: Sequence, name: str) -> list[Tensor]:
    items = list(x)
    if all(isinstance(t, Tensor) for t in items):
        return items
    return [_as_tensor(t, f"{name}[{i}]") for i, t in enumerate(items)]


def _check_mask(mask, embeddings: Tensor, name: str) -> Tensor:
    mask = _as_tensor(mask, name)
    if mask.shape != embeddings.shape[:2]:
        raise InvalidArgumentError(
            f"`{name}` must have shape (n, max_tokens) = {tuple(embeddings.shape[:2])} to match the padded "
            f"embeddings {tuple(embeddings.shape)}, got {tuple(mask.shape)}."
        )
    if mask.dtype != torch.bool:
        mask = mask != 0  # e.g. a tokenizer's 0/1 attention mask
    if mask.device != embeddings.device:
        mask = mask.to(embeddings.device)
    return mask


class _Side:
    """One side of a scoring call (queries or documents), whatever form it came in, exposing:
    ``n``, ``dim``, ``dtype``, ``device``, ``lengths`` (CPU int64, real tokens per item), and
    ``block(index)`` -> ``(embeddings (c, width, dim), valid (c, width) bool or None)`` for a slice
    or a CPU index tensor of items. ``valid`` None means every row of the block is real.

    A padded tensor keeps its mask as given in ``given_mask``; ``lengths`` and ``mask`` (the mask the
    chunked path applies) are derived from it on first use only, because on an accelerator each is a
    host sync, which the fused CUDA path (reading ``padded`` and ``given_mask``) never needs."""

    def __init__(self, x: TokenEmbeddings, mask, name: str, mask_name: str) -> None:
        self.name = name
        self.kind: str
        self.padded: Tensor | None = None
        self.given_mask: Tensor | None = None
        self.items: list[Tensor] | None = None
        self.packed: PackedTokens | None = None
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if isinstance(x, PackedTokens):
            if mask is not None:
                raise InvalidArgumentError(f"`{mask_name}` applies to padded 3-D `{name}` only, not to PackedTokens.")
            length = x.uniform_length
            if length is not None:
                # Zero-copy (n, length, dim) view: scored exactly like unmasked padded input.
                self._init_padded(x.tokens.view(len(x), length, x.dim), None)
            else:
                self.kind = "packed"
                self.packed = x
                self.n, self.dim = len(x), x.dim
                self.dtype, self.device = x.tokens.dtype, x.tokens.device
                self.lengths = x.lengths
        elif isinstance(x, Tensor):
            if x.dim() == 2:
                raise InvalidArgumentError(
                    f"`{name}` is a single 2-D tensor {tuple(x.shape)}; pass a list of (tokens, dim) tensors "
                    f"(e.g. [{name}]) or a padded 3-D (n, max_tokens, dim) tensor."
                )
            if x.dim() != 3:
                raise InvalidArgumentError(f"`{name}` must be a list of 2-D tensors or a 3-D tensor, got shape {tuple(x.shape)}.")
            self._init_padded(x, None if mask is None else _check_mask(mask, x, mask_name))
        elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
            if mask is not None:
                raise InvalidArgumentError(
                    f"`{mask_name}` applies to padded 3-D `{name}` only; a list of tensors carries its own lengths."
                )
            items = _as_tensor_list(x, name)
            self.kind = "list"
            self.items = items
            self.n = len(items)
            if items:
                self.dim, length_list = _check_ragged(items, name)
                self.dtype, self.device = items[0].dtype, items[0].device
            else:
                self.dim, self.dtype, self.device, length_list = None, torch.float32, None, []
            self.lengths = torch.tensor(length_list, dtype=torch.int64)
        else:
            raise ArgumentTypeError(
                f"`{name}` must be a list of 2-D tensors, a 3-D tensor or PackedTokens, got {type(x).__name__}."
            )
        if self.n and self.kind in ("list", "packed"):
            lo, hi = (int(self.lengths.min()), int(self.lengths.max()))
            self.uniform = lo == hi
            self.width = hi
        if self.n == 0:
            self.uniform, self.width = True, 0

    def _init_padded(self, x: Tensor, mask: Tensor | None) -> None:
        self.kind = "padded"
        self.padded, self.given_mask = x, mask
        self.n, self.width, self.dim = x.shape
        self.dtype, self.device = x.dtype, x.device

    @cached_property
    def mask(self) -> Tensor | None:
        """A padded tensor's validity mask for the chunked path: None when every row is real (an
        all-True mask is dropped, skipping the per-chunk masking work). None for lists and stores."""
        if self.given_mask is None or bool(self.given_mask.all()):
            return None
        return self.given_mask

    @cached_property
    def lengths(self) -> Tensor:
        """A padded tensor's real tokens per item (lists and stores set ``lengths`` on creation)."""
        if self.given_mask is None:
            return torch.full((self.n,), self.width, dtype=torch.int64)
        return self.given_mask.sum(dim=1).cpu()

    def real_tokens(self) -> Tensor:
        """All real token rows, item after item, as one ``(total_real_tokens, dim)`` tensor."""
        if self.kind == "list":
            return torch.cat(self.items)
        if self.kind == "packed":
            return self.packed.tokens
        if self.mask is None:
            return self.padded.reshape(-1, self.dim)
        return self.padded[self.mask]

    @property
    def ragged(self) -> bool:
        """Items of different lengths that we pad ourselves (list / packed): scored without padding."""
        return self.kind in ("list", "packed") and not self.uniform

    def offsets(self) -> Tensor:
        """``(n + 1,)`` CPU int64 token offsets of the items, as if packed."""
        if self.kind == "packed":
            return self.packed.offsets
        offsets = torch.zeros(self.n + 1, dtype=torch.int64)
        torch.cumsum(self.lengths, 0, out=offsets[1:])
        return offsets

    def flat_block(self, start: int, end: int, bounds: list[int], dtype: torch.dtype | None, ws: _Workspace) -> Tensor:
        """The real token rows of items ``start:end``, concatenated: a view of a packed store, one
        ``cat`` for a list (both without padding), in ``dtype`` if given."""
        if self.kind == "packed":
            flat = self.packed.tokens[bounds[start] : bounds[end]]
        else:
            rows = bounds[end] - bounds[start]
            flat = torch.cat(self.items[start:end], out=ws.get("gathered", (rows, self.dim), self.dtype))
        if dtype is not None and flat.dtype != dtype:
            flat = ws.get("converted", tuple(flat.shape), dtype).copy_(flat)
        return flat

    def block(
        self, index: slice | Tensor, dtype: torch.dtype | None = None, ws: _Workspace | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Embeddings of the items at ``index`` as ``(count, width, dim)`` (in ``dtype`` if given,
        built in ``ws`` buffers where a copy is needed anyway) and their ``(count, width)`` validity
        mask, None when every row is real."""
        if self.kind == "padded":
            emb, valid = self.padded[index], (None if self.mask is None else self.mask[index])
        else:
            emb, valid = self._gather(index, ws)
        if dtype is not None and emb.dtype != dtype:
            if ws is None:
                emb = emb.to(dtype)
            else:
                emb = ws.get("converted", tuple(emb.shape), dtype).copy_(emb)
        return emb, valid

    def _gather(self, index: slice | Tensor, ws: _Workspace | None) -> tuple[Tensor, Tensor | None]:
        lengths = self.lengths[index]
        count = lengths.numel()
        width = int(lengths.max()) if count else 0
        if width == 0:
            empty = torch.zeros(count, 0, self.dim, dtype=self.dtype, device=self.device)
            return empty, torch.zeros(count, 0, dtype=torch.bool, device=self.device)
        if self.kind == "list":
            idx = range(self.n)[index] if isinstance(index, slice) else index.tolist()
            chunk = [self.items[i] for i in idx]
            if int(lengths.min()) == width:
                if ws is None:
                    return torch.stack(chunk), None
                return torch.stack(chunk, out=ws.get("gathered", (count, width, self.dim), self.dtype)), None
            return pad_token_embeddings(chunk)
        # packed, ragged: one gather of the chunk's rows into (count, width, dim)
        starts = self.packed.offsets[:-1][index]
        positions = torch.arange(width, dtype=torch.int64)
        valid = positions.unsqueeze(0) < lengths.unsqueeze(1)
        rows = torch.where(valid, starts.unsqueeze(1) + positions, 0).reshape(-1)
        tokens = self.packed.tokens
        rows = rows.to(tokens.device)
        if ws is None:
            emb = tokens.index_select(0, rows)
        else:
            emb = torch.index_select(tokens, 0, rows, out=ws.get("gathered", (count * width, self.dim), self.dtype))
        return emb.view(count, width, self.dim), valid.to(self.device)


def _result_dtype(*dtypes: torch.dtype | None) -> torch.dtype:
    """float32 unless an input is float64 (then float64); half precision always accumulates in
    float32 and returns float32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _check_reduce(reduce: str) -> None:
    if reduce not in ("sum", "mean"):
        raise InvalidArgumentError(f"reduce must be 'sum' (ColBERT) or 'mean' (BGE-M3), got {reduce!r}.")


def _check_positive(value: int | None, name: str) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise InvalidArgumentError(f"{name} must be a positive int or None, got {value!r}.")


def _default_budget(device: torch.device | None, copies: bool = False) -> int:
    if device is not None and device.type != "cpu":
        return DEFAULT_MEMORY_BUDGET_CUDA
    return DEFAULT_MEMORY_BUDGET_CPU_COPY if copies else DEFAULT_MEMORY_BUDGET_CPU


_MM_OUT_DTYPE_OK: dict[tuple[str, torch.dtype], bool] = {}


#: Widest query (in tokens, real or padding) scored by the fused Triton kernel; it holds a block of
#: whole queries, padded to a power of two, in registers. ColBERT queries are 32 tokens.
_FUSED_MAX_QUERY_TOKENS = 128


def _fused_maxsim(q_side: _Side, d_side: _Side, device: torch.device, reduce: ReduceMode) -> Tensor | None:
    """The ``(n_queries, n_documents)`` scores from :func:`xm_integrations.scoring.triton_kernel.maxsim_triton`
    where it computes the same function; None, having done nothing, everywhere else.

    Taken on CUDA when both sides are the same half-precision dtype, ``dim`` is a power of two
    >= 16, queries are at most :data:`_FUSED_MAX_QUERY_TOKENS` wide, the documents are read in
    place (a padded tensor, with any mask; or a uniform-length :class:`PackedTokens`), and Triton
    imports. Ragged lists and stores keep the chunked path: padding them for the kernel measured
    slower on an H200 (0.09-0.64x with one query).

    Nothing here waits for the GPU when the queries are a padded CUDA tensor: the document mask goes
    to the kernel as given (each document's last real position, and whether its real rows are a
    prefix, are computed on the device), the kernel writes the result in place and scores empty
    documents and queries 0 (queries are zero-padded, and a zero token adds exactly 0 to every
    score), so neither the CPU lengths nor an emptiness check is needed; ``reduce="mean"`` divides
    by token counts summed on the device (at least 1, so an empty query stays 0).
    """
    half = (torch.float16, torch.bfloat16)
    dim = d_side.dim
    if device.type != "cuda" or d_side.dtype not in half or q_side.dtype != d_side.dtype:
        return None
    if dim is None or dim < 16 or dim & (dim - 1) or q_side.width > _FUSED_MAX_QUERY_TOKENS:
        return None
    if d_side.kind != "padded":
        return None
    try:
        import triton  # noqa: F401 - only to know whether the kernel can be built
    except ImportError:
        return None
    from xm_integrations.scoring.triton_kernel import maxsim_triton

    if q_side.kind == "padded":
        queries, valid = q_side.padded, q_side.given_mask
    else:
        queries, valid = q_side.block(slice(0, q_side.n))
    queries = queries.to(device)
    if valid is not None:
        valid = valid.to(device)
        queries = queries.masked_fill(~valid.unsqueeze(-1), 0.0)
    scores = maxsim_triton(queries, d_side.padded, mask=d_side.given_mask)
    if reduce == "mean":
        scores /= max(q_side.width, 1) if valid is None else valid.sum(dim=1, keepdim=True).clamp_(min=1)
    return scores


def _product_f32(a: Tensor, b_t: Tensor) -> Tensor:
    """``a @ b_t`` for half-precision ``a`` and ``b_t`` of the same dtype, accumulated and returned in
    float32 without upcasting the (large) ``a``: ``torch.mm(..., out_dtype=float32)`` where this
    torch/device has it (CUDA, torch >= 2.8), else an upcast. Remembered per device type/dtype."""
    key = (a.device.type, a.dtype)
    if _MM_OUT_DTYPE_OK.get(key, True):
        try:
            out = torch.mm(a, b_t, out_dtype=torch.float32)
            _MM_OUT_DTYPE_OK[key] = True
            return out
        except (TypeError, RuntimeError, NotImplementedError):
            _MM_OUT_DTYPE_OK[key] = False
    return torch.mm(a.float(), b_t.float())


# --------------------------------------------------------------------------------------------------
# Chunk planning
# --------------------------------------------------------------------------------------------------


def _doc_bytes(width: int, query_tokens: int, dim: int, elem: int) -> int:
    """Working-set bytes per document in a chunk: its similarity rows, a compute-dtype copy of its
    padded embeddings (counted even where the block is a view, to stay an upper bound), the padding
    row index (int64) and mask, and its per-query-token maxima."""
    return width * (query_tokens * elem + dim * elem + 9) + query_tokens * elem


def _query_chunks(
    lengths: Tensor, doc_width: int, dim: int, elem: int, budget: int, query_chunk_size: int | None
) -> list[tuple[int, int]]:
    """Group consecutive queries. Fixed ``query_chunk_size`` queries each if given; otherwise as many
    query tokens as keep a chunk of 128 documents inside ``budget`` (always at least one query)."""
    n = lengths.numel()
    if query_chunk_size is not None:
        return [(s, min(n, s + query_chunk_size)) for s in range(0, n, query_chunk_size)]
    per_token = max(1, doc_width) * elem * 128
    cap = max(1, (budget - 128 * _doc_bytes(doc_width, 0, dim, elem)) // per_token)
    ranges, start, tokens = [], 0, 0
    for i, length in enumerate(lengths.tolist()):
        if i > start and tokens + length > cap:
            ranges.append((start, i))
            start, tokens = i, 0
        tokens += length
    if n:
        ranges.append((start, n))
    return ranges


def _doc_chunks(
    n: int, width: int, query_tokens: int, dim: int, elem: int, budget: int, chunk_size: int | None
) -> list[tuple[int, int]]:
    """Chunks of padded documents (all ``width`` wide): ``chunk_size`` each if given, else as many
    as fit the budget."""
    size = chunk_size if chunk_size is not None else max(1, budget // _doc_bytes(width, query_tokens, dim, elem))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _ragged_chunks(
    offsets: Tensor, query_tokens: int, dim: int, elem: int, budget: int, chunk_size: int | None
) -> list[tuple[int, int]]:
    """Chunks of consecutive ragged documents, scored without padding: ``chunk_size`` documents each
    if given, else greedily as many as keep ``tokens * (similarity row + embedding copy) + documents
    * maxima`` inside the budget (one binary search per chunk over the cumulative cost)."""
    n = offsets.numel() - 1
    if chunk_size is not None:
        return [(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]
    per_token = (query_tokens + dim) * elem
    per_doc = query_tokens * elem + 16
    cost = offsets * per_token + torch.arange(n + 1, dtype=torch.int64) * per_doc
    ranges, start = [], 0
    while start < n:
        end = int(torch.searchsorted(cost, cost[start] + budget, right=True)) - 1
        end = min(n, max(end, start + 1))
        ranges.append((start, end))
        start = end
    return ranges


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def maxsim(
    queries: TokenEmbeddings,
    documents: TokenEmbeddings,
    *,
    query_mask: Tensor | None = None,
    document_mask: Tensor | None = None,
    reduce: ReduceMode = "sum",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """MaxSim scores of every query against every document, shape ``(n_queries, n_documents)``.

    ``score[i, j] = sum_t max_u <q_i[t], d_j[u]>`` over real query tokens ``t`` and real document
    tokens ``u`` (``reduce="sum"``, ColBERT), or that sum divided by the query's real token count
    (``reduce="mean"``, BGE-M3).

    Dispatch: on CUDA, when queries and documents share a bf16/fp16 dtype, ``dim`` is a power of
    two >= 16, queries are at most 128 tokens wide and the documents are read in place (a padded
    tensor with any ``document_mask``, or a uniform-length :class:`PackedTokens`), scores come
    from one fused Triton kernel (:func:`xm_integrations.scoring.triton_kernel.maxsim_triton`: float32
    accumulation, the mask applied per token, rows after a document's last real token never read,
    same empty-item rules; 9-10x this chunked path for one query and ~15x for 64 on an H200). With
    padded CUDA queries that path never waits for the GPU (no mask sums or checks on the host).
    Everything else (CPU, float32/float64, mixed dtypes, ragged lists and stores, no Triton) takes
    the chunked path described here; ``chunk_size``, ``query_chunk_size`` and ``memory_budget``
    apply only to that path.

    Args:
        queries: A list of ``(tokens_i, dim)`` tensors, a padded ``(n, max_tokens, dim)`` tensor
            (with ``query_mask``), or :class:`PackedTokens`. Padding never costs compute on this
            side: only real query tokens enter the product.
        documents: Same forms. :class:`PackedTokens` (uniform or ragged) and padded tensors are
            scored without copying the embeddings (fp32); a list costs one copy (``cat``) per
            chunk. Ragged lists and stores are scored on their real tokens only; a padded tensor
            pays the product on its padding, so a heavily padded corpus scored repeatedly is best
            converted once with :meth:`PackedTokens.from_padded`.
        query_mask / document_mask: ``(n, max_tokens)`` masks for padded 3-D inputs, True (or
            non-zero) on real tokens; None means every row is real (padding is never guessed from
            zero rows). Padding is set to ``-inf`` before the max, so no padding value can win it.
        reduce: ``"sum"`` or ``"mean"``.
        chunk_size: Documents per chunk (overrides ``memory_budget`` for the document axis).
        query_chunk_size: Queries per chunk (overrides ``memory_budget`` for the query axis).
        memory_budget: Bytes for one chunk's working set (similarity block, compute-dtype copy of
            the document chunk, indices, maxima), not counting the inputs and the result. Defaults
            to :data:`DEFAULT_MEMORY_BUDGET_CPU` / :data:`DEFAULT_MEMORY_BUDGET_CUDA`. A single
            document with all query tokens of one query may exceed it (at least one of each per
            chunk).

    Returns:
        ``(n_queries, n_documents)`` float32 (float64 if an input is float64) on the documents'
        device; queries on another device are moved there (they are the small side). Half-precision
        inputs are accumulated in float32. A document without real tokens scores ``0.0`` (the empty
        maximum is defined as 0 so that scores never become NaN or -inf); so does a query without
        real tokens, for either ``reduce``.

    Raises:
        ValueError: on embedding dims that differ (both are named), a mask whose shape does not
            match its padded tensor, a mask given with a list, a bare 2-D tensor (ambiguous: wrap it
            in a list), or an unknown ``reduce``.
    """
    _check_reduce(reduce)
    _check_positive(chunk_size, "chunk_size")
    _check_positive(query_chunk_size, "query_chunk_size")
    _check_positive(memory_budget, "memory_budget")
    q_side = _Side(queries, query_mask, "queries", "query_mask")
    d_side = _Side(documents, document_mask, "documents", "document_mask")
    if q_side.dim is not None and d_side.dim is not None and q_side.dim != d_side.dim:
        raise InvalidArgumentError(
            f"embedding dims differ: queries have dim {q_side.dim}, documents have dim {d_side.dim}."
        )
    device = d_side.device or q_side.device or torch.device("cpu")
    fused = _fused_maxsim(q_side, d_side, device, reduce)
    if fused is not None:
        return fused
    out_dtype = _result_dtype(q_side.dtype, d_side.dtype)
    out = torch.zeros(q_side.n, d_side.n, dtype=out_dtype, device=device)
    if q_side.n == 0 or d_side.n == 0 or int(q_side.lengths.sum()) == 0 or int(d_side.lengths.sum()) == 0:
        return out  # nothing to score; empty queries/documents score 0.0
    dim = d_side.dim
    elem = torch.finfo(out_dtype).bits // 8

    # Queries: real tokens only, flattened, grouped into chunks of whole queries.
    q_flat = q_side.real_tokens().to(device)
    half = d_side.dtype in (torch.float16, torch.bfloat16)
    fast_half = half and device.type != "cpu" and q_flat.dtype == d_side.dtype
    copies = d_side.kind == "list" or (not fast_half and d_side.dtype != out_dtype)
    budget = memory_budget if memory_budget is not None else _default_budget(device, copies)
    q_flat = q_flat if fast_half else q_flat.to(out_dtype)
    q_lengths = q_side.lengths
    q_offsets = [0] + torch.cumsum(q_lengths, 0).tolist()
    q_ranges = _query_chunks(q_lengths, d_side.width, dim, elem, budget, query_chunk_size)
    q_chunks = []
    for q0, q1 in q_ranges:
        t0, t1 = q_offsets[q0], q_offsets[q1]
        if t1 == t0:
            continue  # only empty queries: their rows stay 0.0
        q_ids = torch.repeat_interleave(torch.arange(q1 - q0), q_lengths[q0:q1]).to(device)
        q_chunks.append((q0, q1, q_flat[t0:t1].t().contiguous(), q_ids))
    max_query_tokens = max(t.shape[1] for _, _, t, _ in q_chunks)

    on_cpu = device.type == "cpu"
    ws = _Workspace(device)
    block_dtype = None if fast_half else out_dtype

    def reduce_queries(best: Tensor, q0: int, q1: int, q_ids: Tensor, doc_index: slice) -> None:
        # Per-query sum over its own tokens, in token order (deterministic on CPU).
        scores = best.new_zeros(best.shape[0], q1 - q0).index_add_(1, q_ids, best)
        out[q0:q1, doc_index] = scores.t()

    def product(flat: Tensor, q_t: Tensor) -> Tensor:
        if fast_half:
            return _product_f32(flat, q_t)
        return torch.mm(flat, q_t, out=ws.get("sims", (flat.shape[0], q_t.shape[1]), out_dtype))

    if d_side.ragged:
        # Ragged list / packed store: the product runs on the real tokens only (a contiguous slice of
        # a packed store, one cat for a list) and each document's maxima are a segment max over its
        # rows. Measured faster than padding each chunk, even length-sorted: the padding gather costs
        # as much as the product. Empty documents have empty segments (-inf), set to 0 below.
        offsets = d_side.offsets()
        bounds = offsets.tolist()
        lengths_all = d_side.lengths
        lengths_dev = lengths_all.to(device)  # once: no host-to-device copy per chunk
        has_empty = bool((lengths_all == 0).any())
        for s, e in _ragged_chunks(offsets, max_query_tokens, dim, elem, budget, chunk_size):
            if bounds[e] == bounds[s]:
                continue  # only empty documents: 0.0
            flat = d_side.flat_block(s, e, bounds, block_dtype, ws)
            lengths = lengths_dev[s:e]
            empty = None
            if has_empty and int(lengths_all[s:e].min()) == 0:
                empty = (lengths_all[s:e] == 0).nonzero().squeeze(1).to(device)
            for q0, q1, q_t, q_ids in q_chunks:
                sims = product(flat, q_t)
                best = torch.segment_reduce(sims, "max", lengths=lengths, axis=0, unsafe=True)
                if empty is not None:
                    best.index_fill_(0, empty, 0.0)
                reduce_queries(best, q0, q1, q_ids, slice(s, e))
                del sims, best  # free before the next block is allocated (peak = one block)
    else:
        # Padded tensor, or items of one length (a packed store is then a zero-copy view).
        for s, e in _doc_chunks(d_side.n, d_side.width, max_query_tokens, dim, elem, budget, chunk_size):
            emb, valid = d_side.block(slice(s, e), block_dtype, ws)
            count, width = emb.shape[0], emb.shape[1]
            if width == 0:
                continue
            flat = emb.reshape(count * width, dim)
            pad_rows = empty = None
            if valid is not None:
                valid = valid.to(device)
                if on_cpu:
                    # index_fill_ touches only the padding rows; masked_fill_ would sweep the block.
                    pad_rows = (~valid).reshape(-1).nonzero().squeeze(1)
                    empty_docs = (~valid.any(dim=1)).nonzero().squeeze(1)
                    empty = empty_docs if empty_docs.numel() else None
                else:
                    # No host sync on accelerators: masked fills instead of index lists.
                    pad_rows = ~valid.reshape(-1, 1)
                    empty = ~valid.any(dim=1, keepdim=True)
            for q0, q1, q_t, q_ids in q_chunks:
                sims = product(flat, q_t)
                if pad_rows is not None:
                    if on_cpu:
                        sims.index_fill_(0, pad_rows, _NEG_INF)
                    else:
                        sims.masked_fill_(pad_rows, _NEG_INF)
                best = sims.view(count, width, -1).amax(dim=1)  # (count, q_tokens)
                if empty is not None:
                    if on_cpu:
                        best.index_fill_(0, empty, 0.0)
                    else:
                        best.masked_fill_(empty, 0.0)
                reduce_queries(best, q0, q1, q_ids, slice(s, e))
                del sims, best  # free before the next block is allocated (peak = one block)
    if reduce == "mean":
        out /= q_lengths.clamp(min=1).to(device=device, dtype=out_dtype).unsqueeze(1)
    return out


def maxsim_pairwise(
    queries: TokenEmbeddings,
    documents: TokenEmbeddings,
    *,
    query_mask: Tensor | None = None,
    document_mask: Tensor | None = None,
    reduce: ReduceMode = "sum",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """MaxSim of query ``i`` against document ``i`` only, shape ``(n,)`` (re-ranking, training
    pairs). Same inputs, masking, precision and empty-item rules as :func:`maxsim`; ``chunk_size``
    is pairs per chunk. Raises ValueError when the two sides hold different numbers of items."""
    _check_reduce(reduce)
    _check_positive(chunk_size, "chunk_size")
    _check_positive(memory_budget, "memory_budget")
    q_side = _Side(queries, query_mask, "queries", "query_mask")
    d_side = _Side(documents, document_mask, "documents", "document_mask")
    if q_side.n != d_side.n:
        raise InvalidArgumentError(f"pairwise scoring needs as many queries as documents, got {q_side.n} and {d_side.n}.")
    if q_side.dim is not None and d_side.dim is not None and q_side.dim != d_side.dim:
        raise InvalidArgumentError(
            f"embedding dims differ: queries have dim {q_side.dim}, documents have dim {d_side.dim}."
        )
    device = d_side.device or q_side.device or torch.device("cpu")
    out_dtype = _result_dtype(q_side.dtype, d_side.dtype)
    out = torch.zeros(d_side.n, dtype=out_dtype, device=device)
    if d_side.n == 0:
        return out
    dim = d_side.dim
    elem = torch.finfo(out_dtype).bits // 8
    budget = memory_budget if memory_budget is not None else _default_budget(device)
    per_pair = q_side.width * d_side.width * elem + (q_side.width + d_side.width) * (dim * elem + 1)
    size = chunk_size if chunk_size is not None else max(1, budget // max(1, per_pair))
    for s in range(0, d_side.n, size):
        index = slice(s, min(d_side.n, s + size))
        q_emb, q_valid = q_side.block(index)
        d_emb, d_valid = d_side.block(index)
        if q_emb.shape[1] == 0 or d_emb.shape[1] == 0:
            continue  # empty queries or documents throughout: 0.0
        q_emb = q_emb.to(device=device, dtype=out_dtype)
        d_emb = d_emb.to(dtype=out_dtype)
        sims = torch.bmm(q_emb, d_emb.transpose(1, 2))  # (c, q_width, d_width)
        if d_valid is not None:
            sims.masked_fill_(~d_valid.unsqueeze(1), _NEG_INF)
        best = sims.amax(dim=2)  # (c, q_width); -inf rows for empty documents
        keep = None if q_valid is None else q_valid.to(device)
        if d_valid is not None:
            nonempty = d_valid.any(dim=1, keepdim=True)
            keep = nonempty if keep is None else keep & nonempty
        if keep is not None:
            # where, not multiply: 0 * -inf (empty document) or 0 * garbage padding would be NaN.
            best = torch.where(keep, best, best.new_zeros(()))
        out[index] = best.sum(dim=1)
    if reduce == "mean":
        out /= q_side.lengths.clamp(min=1).to(device=device, dtype=out_dtype)
    return out
