"""MaxSim in one fused Triton kernel over padded half-precision document vectors (CUDA only).

:func:`xm_integrations.maxsim.maxsim` dispatches here on CUDA for bf16/fp16 padded documents: the
similarity products run on the tensor cores with float32 accumulation, the max and the sum in
float32, and only real document rows are read. Triton is imported on first use only, so this module
imports on machines without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["maxsim_triton"]

_MAXSIM_KERNEL = None


def _maxsim_kernel():
    """Build (once) the Triton kernel; Triton is imported only here."""
    global _MAXSIM_KERNEL
    if _MAXSIM_KERNEL is not None:
        return _MAXSIM_KERNEL
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, d_ptr, len_ptr, out_ptr, n_rows, n_docs, n_query_blocks,
               stride_q, stride_dn, stride_dt, stride_on,
               LQ: tl.constexpr, DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr,
               DOCS: tl.constexpr):
        # One program: BLOCK_M query-token rows (BLOCK_M // LQ whole queries) against DOCS documents.
        # Consecutive programs share their documents (query block varies fastest): L2 reuse.
        pid = tl.program_id(0)
        qb = pid % n_query_blocks
        db = pid // n_query_blocks
        rows = qb * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, DIM)
        q = tl.load(q_ptr + rows[:, None] * stride_q + dims[None, :], mask=rows[:, None] < n_rows, other=0.0)
        queries = qb * (BLOCK_M // LQ) + tl.arange(0, BLOCK_M // LQ)
        for i in range(DOCS):
            doc = db * DOCS + i
            if doc < n_docs:
                length = tl.load(len_ptr + doc)
                best = tl.full([BLOCK_M], float("-inf"), tl.float32)
                for t0 in range(0, length, BLOCK_T):
                    toks = t0 + tl.arange(0, BLOCK_T)
                    d = tl.load(d_ptr + doc.to(tl.int64) * stride_dn + toks[:, None] * stride_dt + dims[None, :],
                                mask=toks[:, None] < length, other=0.0)
                    s = tl.dot(q, tl.trans(d))
                    s = tl.where(toks[None, :] < length, s, float("-inf"))
                    best = tl.maximum(best, tl.max(s, axis=1))
                best = tl.where(best == float("-inf"), 0.0, best)
                sums = tl.sum(tl.reshape(best, [BLOCK_M // LQ, LQ]), axis=1)
                tl.store(out_ptr + doc.to(tl.int64) * stride_on + queries, sums, mask=queries * LQ < n_rows)

    _MAXSIM_KERNEL = (triton, kernel)
    return _MAXSIM_KERNEL


def maxsim_triton(queries: Tensor, documents: Tensor, lengths: Tensor, *, block_m: int | None = None,
                  block_t: int = 64, docs_per_program: int = 4, num_warps: int | None = None,
                  num_stages: int = 3) -> Tensor:
    """MaxSim of every query against every document in one kernel: ``(n_queries, n_documents)`` float32.

    Args:
        queries: ``(n_queries, query_tokens, dim)`` bf16/fp16 on CUDA; every token is scored (ColBERT
            queries are expanded to ``query_maxlen``). ``query_tokens`` is padded with zero vectors to a
            power of two (a zero token adds 0 to every score).
        documents: ``(n_documents, max_tokens, dim)``, same dtype; document ``j``'s real vectors are
            rows ``[0, lengths[j])`` (the padded layout of packed ColBERT vectors). Padding is never read.
        lengths: ``(n_documents,)`` integer token counts. A document without tokens scores 0.

    The similarity products run on the tensor cores with float32 accumulation; the max and the sum
    are float32. Only real document rows are read, once per block of ``block_m`` query tokens.
    """
    if queries.dim() != 3 or documents.dim() != 3:
        raise ValueError("queries must be (n, tokens, dim) and documents (n, max_tokens, dim)")
    if queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"dimension mismatch: queries {queries.shape[-1]}, documents {documents.shape[-1]}")
    if not (queries.is_cuda and documents.is_cuda):
        raise ValueError("maxsim_triton runs on CUDA tensors")
    triton, kernel = _maxsim_kernel()
    dim = documents.shape[-1]
    if dim & (dim - 1) or dim < 16:
        raise ValueError(f"dim must be a power of two >= 16, got {dim}")
    n_queries, query_tokens = queries.shape[:2]
    lq = max(16, 1 << (query_tokens - 1).bit_length())
    queries = queries.to(documents.dtype)
    if lq != query_tokens:
        queries = torch.nn.functional.pad(queries, (0, 0, 0, lq - query_tokens))
    flat = queries.reshape(n_queries * lq, dim).contiguous()
    if documents.stride(-1) != 1:
        documents = documents.contiguous()
    lengths = lengths.to(device=documents.device, dtype=torch.int32).clamp_(max=documents.shape[1]).contiguous()
    if block_m is None:
        block_m = max(lq, min(128, 1 << (lq * n_queries - 1).bit_length()))  # tl.arange needs a power of two
    block_m = max(block_m, lq)
    n_docs = documents.shape[0]
    out = torch.empty((n_docs, n_queries), dtype=torch.float32, device=documents.device)
    if n_docs == 0 or n_queries == 0:
        return out.T
    n_query_blocks = triton.cdiv(n_queries * lq, block_m)
    grid = (n_query_blocks * triton.cdiv(n_docs, docs_per_program),)
    kernel[grid](
        flat, documents, lengths, out, n_queries * lq, n_docs, n_query_blocks,
        flat.stride(0), documents.stride(0), documents.stride(1), out.stride(0),
        LQ=lq, DIM=dim, BLOCK_M=block_m, BLOCK_T=block_t, DOCS=docs_per_program,
        num_warps=num_warps or (4 if block_m <= 64 else 8), num_stages=num_stages,
    )
    return out.T
