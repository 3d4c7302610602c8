"""How MaxSim reads one side of a call, and how it cuts the work into chunks that fit a memory budget.

:class:`_Side` normalises queries or documents (list, padded tensor with a mask, :class:`PackedTokens`)
into real-token views; the chunk planners size each block of the similarity product so that its
working set stays within the budget (in cache on CPU, large enough to fill a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Literal, Union

import numpy as np
import torch
from torch import Tensor

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError
from xm_integrations.scoring.stores import (
    PackedTokens,
    _as_tensor_list,
    _check_mask,
    _check_ragged,
    pad_token_embeddings,
)

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


#: What :func:`maxsim` accepts on either side.
TokenEmbeddings = Union[Sequence[Tensor], Tensor, PackedTokens, np.ndarray]


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
