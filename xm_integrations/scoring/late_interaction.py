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

import torch
from torch import Tensor

from xm_integrations.errors import InvalidArgumentError
from xm_integrations.scoring.chunking import (
    _NEG_INF,
    DEFAULT_MEMORY_BUDGET_CPU,
    DEFAULT_MEMORY_BUDGET_CPU_COPY,
    DEFAULT_MEMORY_BUDGET_CUDA,
    ReduceMode,
    TokenEmbeddings,
    _check_positive,
    _check_reduce,
    _default_budget,
    _doc_chunks,
    _product_f32,
    _query_chunks,
    _ragged_chunks,
    _result_dtype,
    _Side,
    _Workspace,
)
from xm_integrations.scoring.stores import PackedTokens, pack_token_embeddings, pad_token_embeddings

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
    plan = _Plan.make(q_side, d_side, device, out, memory_budget, query_chunk_size)
    if d_side.ragged:
        _score_ragged(plan, d_side, chunk_size)
    else:
        _score_padded(plan, d_side, chunk_size)
    if reduce == "mean":
        out /= q_side.lengths.clamp(min=1).to(device=device, dtype=out_dtype).unsqueeze(1)
    return out


class _Plan:
    """The query side cut into chunks of whole queries, the output, and how one block is computed."""

    def __init__(self, out: Tensor, q_chunks: list, max_query_tokens: int, budget: int, block_dtype: torch.dtype | None,
                 fast_half: bool, device: torch.device) -> None:
        self.out, self.q_chunks, self.max_query_tokens, self.budget = out, q_chunks, max_query_tokens, budget
        self.block_dtype, self.fast_half, self.device = block_dtype, fast_half, device
        self.ws = _Workspace(device)

    @classmethod
    def make(cls, q_side: _Side, d_side: _Side, device: torch.device, out: Tensor, memory_budget: int | None,
             query_chunk_size: int | None) -> _Plan:
        """Queries: real tokens only, flattened, grouped into chunks of whole queries that fit the budget."""
        out_dtype = out.dtype
        dim = d_side.dim
        elem = torch.finfo(out_dtype).bits // 8
        q_flat = q_side.real_tokens().to(device)
        half = d_side.dtype in (torch.float16, torch.bfloat16)
        fast_half = half and device.type != "cpu" and q_flat.dtype == d_side.dtype
        copies = d_side.kind == "list" or (not fast_half and d_side.dtype != out_dtype)
        budget = memory_budget if memory_budget is not None else _default_budget(device, copies)
        q_flat = q_flat if fast_half else q_flat.to(out_dtype)
        q_lengths = q_side.lengths
        q_offsets = [0] + torch.cumsum(q_lengths, 0).tolist()
        q_chunks = []
        for q0, q1 in _query_chunks(q_lengths, d_side.width, dim, elem, budget, query_chunk_size):
            t0, t1 = q_offsets[q0], q_offsets[q1]
            if t1 == t0:
                continue  # only empty queries: their rows stay 0.0
            q_ids = torch.repeat_interleave(torch.arange(q1 - q0), q_lengths[q0:q1]).to(device)
            q_chunks.append((q0, q1, q_flat[t0:t1].t().contiguous(), q_ids))
        max_query_tokens = max(t.shape[1] for _, _, t, _ in q_chunks)
        block_dtype = None if fast_half else out_dtype
        return cls(out, q_chunks, max_query_tokens, budget, block_dtype, fast_half, device)

    def product(self, flat: Tensor, q_t: Tensor) -> Tensor:
        if self.fast_half:
            return _product_f32(flat, q_t)
        return torch.mm(flat, q_t, out=self.ws.get("sims", (flat.shape[0], q_t.shape[1]), self.out.dtype))

    def reduce_queries(self, best: Tensor, q0: int, q1: int, q_ids: Tensor, doc_index: slice) -> None:
        """Per-query sum over its own tokens, in token order (deterministic on CPU)."""
        scores = best.new_zeros(best.shape[0], q1 - q0).index_add_(1, q_ids, best)
        self.out[q0:q1, doc_index] = scores.t()


def _score_ragged(plan: _Plan, d_side: _Side, chunk_size: int | None) -> None:
    """Ragged list / packed store: the product on the real tokens only, each document's maxima a segment max.

    Measured faster than padding each chunk, even length-sorted: the padding gather costs as much as
    the product. Empty documents have empty segments (-inf), set to 0.
    """
    device, dim = plan.device, d_side.dim
    elem = plan.out.element_size()
    offsets = d_side.offsets()
    bounds = offsets.tolist()
    lengths_all = d_side.lengths
    lengths_dev = lengths_all.to(device)  # once: no host-to-device copy per chunk
    has_empty = bool((lengths_all == 0).any())
    for s, e in _ragged_chunks(offsets, plan.max_query_tokens, dim, elem, plan.budget, chunk_size):
        if bounds[e] == bounds[s]:
            continue  # only empty documents: 0.0
        flat = d_side.flat_block(s, e, bounds, plan.block_dtype, plan.ws)
        lengths = lengths_dev[s:e]
        empty = None
        if has_empty and int(lengths_all[s:e].min()) == 0:
            empty = (lengths_all[s:e] == 0).nonzero().squeeze(1).to(device)
        for q0, q1, q_t, q_ids in plan.q_chunks:
            sims = plan.product(flat, q_t)
            best = torch.segment_reduce(sims, "max", lengths=lengths, axis=0, unsafe=True)
            if empty is not None:
                best.index_fill_(0, empty, 0.0)
            plan.reduce_queries(best, q0, q1, q_ids, slice(s, e))
            del sims, best  # free before the next block is allocated (peak = one block)


def _score_padded(plan: _Plan, d_side: _Side, chunk_size: int | None) -> None:
    """Padded tensor, or items of one length (a packed store is then a zero-copy view): padding rows at -inf."""
    device, dim = plan.device, d_side.dim
    elem = plan.out.element_size()
    on_cpu = device.type == "cpu"
    for s, e in _doc_chunks(d_side.n, d_side.width, plan.max_query_tokens, dim, elem, plan.budget, chunk_size):
        emb, valid = d_side.block(slice(s, e), plan.block_dtype, plan.ws)
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
        for q0, q1, q_t, q_ids in plan.q_chunks:
            sims = plan.product(flat, q_t)
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
            plan.reduce_queries(best, q0, q1, q_ids, slice(s, e))
            del sims, best  # free before the next block is allocated (peak = one block)


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
