"""MaxSim in one fused Triton kernel over padded half-precision document vectors (CUDA only).

:func:`xm_integrations.maxsim.maxsim` dispatches here on CUDA for bf16/fp16 padded documents: the
similarity products run on the tensor cores with float32 accumulation, the max and the sum in
float32, the document mask is applied per token, and no row after a document's last real row is
read. Triton is imported on first use only, so this module imports on machines without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["maxsim_triton"]

_MAXSIM_KERNEL = None
#: Mask positions read per step while the kernel looks for a document's last real token (one step
#: for ColBERT's 256-token documents).
_SCAN_TOKENS = 256


def _maxsim_kernel():
    """Build (once) the Triton kernel; Triton is imported only here."""
    global _MAXSIM_KERNEL
    if _MAXSIM_KERNEL is not None:
        return _MAXSIM_KERNEL
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, d_ptr, len_ptr, mask_ptr, out_ptr, n_rows, n_docs, n_tokens, n_query_blocks,
               stride_q, stride_dn, stride_dt, stride_mn, stride_mt, stride_oq, stride_od,
               LQ: tl.constexpr, DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr,
               BLOCK_SCAN: tl.constexpr, DOCS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
               HAS_MASK: tl.constexpr):
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
                doc64 = doc.to(tl.int64)
                if HAS_MASK:
                    mask_row = mask_ptr + doc64 * stride_mn
                if HAS_LENGTHS:
                    length = tl.minimum(tl.load(len_ptr + doc), n_tokens)
                elif HAS_MASK:
                    # Loop bound: last real position + 1 (0 without one). Rows past it are never read.
                    length = 0
                    for t0 in range(0, n_tokens, BLOCK_SCAN):
                        toks = t0 + tl.arange(0, BLOCK_SCAN)
                        real = tl.load(mask_row + toks * stride_mt, mask=toks < n_tokens, other=0)
                        length = tl.maximum(length, tl.max(tl.where(real != 0, toks + 1, 0)))
                else:
                    length = n_tokens
                best = tl.full([BLOCK_M], float("-inf"), tl.float32)
                for t0 in range(0, length, BLOCK_T):
                    toks = t0 + tl.arange(0, BLOCK_T)
                    d = tl.load(d_ptr + doc64 * stride_dn + toks[:, None] * stride_dt + dims[None, :],
                                mask=toks[:, None] < length, other=0.0)
                    s = tl.dot(q, tl.trans(d))
                    valid = toks < length
                    if HAS_MASK:
                        valid = valid & (tl.load(mask_row + toks * stride_mt, mask=valid, other=0) != 0)
                    s = tl.where(valid[None, :], s, float("-inf"))
                    best = tl.maximum(best, tl.max(s, axis=1))
                best = tl.where(best == float("-inf"), 0.0, best)
                sums = tl.sum(tl.reshape(best, [BLOCK_M // LQ, LQ]), axis=1)
                tl.store(out_ptr + queries.to(tl.int64) * stride_oq + doc64 * stride_od, sums,
                         mask=queries * LQ < n_rows)

    _MAXSIM_KERNEL = (triton, kernel)
    return _MAXSIM_KERNEL


def maxsim_triton(queries: Tensor, documents: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                  block_m: int | None = None, block_t: int = 64, docs_per_program: int = 4,
                  num_warps: int | None = None, num_stages: int = 3) -> Tensor:
    """MaxSim of every query against every document in one kernel: ``(n_queries, n_documents)`` float32.

    Args:
        queries: ``(n_queries, query_tokens, dim)`` bf16/fp16 on CUDA; every token is scored (ColBERT
            queries are expanded to ``query_maxlen``). ``query_tokens`` is padded with zero vectors to a
            power of two (a zero token adds 0 to every score).
        documents: ``(n_documents, max_tokens, dim)``, same dtype, on the same device.
        lengths: ``(n_documents,)`` integer token counts (moved to the documents' device if elsewhere):
            document ``j`` reads rows ``[0, lengths[j])`` only (the padded layout of packed ColBERT
            vectors). None: every row.
        mask: ``(n_documents, max_tokens)`` (moved likewise), True (non-zero) on real tokens, any
            pattern (holes too): other rows never win a max. Without ``lengths``, each document reads
            rows up to its last real one, found by the kernel itself, so nothing is synchronised or
            copied to the host and the padding after it is never read.

    A document without real tokens scores 0. The similarity products run on the tensor cores with
    float32 accumulation; the max and the sum are float32. Each document row is read once per
    block of ``block_m`` query tokens, and the scores are written in place into the result.
    """
    if queries.dim() != 3 or documents.dim() != 3:
        raise ValueError("queries must be (n, tokens, dim) and documents (n, max_tokens, dim)")
    if queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"dimension mismatch: queries {queries.shape[-1]}, documents {documents.shape[-1]}")
    if not (queries.is_cuda and documents.is_cuda):
        raise ValueError("maxsim_triton runs on CUDA tensors")
    if mask is not None and mask.shape != documents.shape[:2]:
        raise ValueError(f"mask must have shape {tuple(documents.shape[:2])}, got {tuple(mask.shape)}")
    triton, kernel = _maxsim_kernel()
    dim = documents.shape[-1]
    if dim & (dim - 1) or dim < 16:
        raise ValueError(f"dim must be a power of two >= 16, got {dim}")
    n_queries, query_tokens = queries.shape[:2]
    n_docs, n_tokens = documents.shape[:2]
    if n_tokens == 0:  # every document is empty (and an empty tensor may have no address to launch on)
        return torch.zeros((n_queries, n_docs), dtype=torch.float32, device=documents.device)
    out = torch.empty((n_queries, n_docs), dtype=torch.float32, device=documents.device)
    if n_docs == 0 or n_queries == 0:
        return out
    lq = max(16, 1 << (query_tokens - 1).bit_length())
    queries = queries.to(documents.dtype)
    if lq != query_tokens:
        queries = torch.nn.functional.pad(queries, (0, 0, 0, lq - query_tokens))
    flat = queries.reshape(n_queries * lq, dim).contiguous()
    if documents.stride(-1) != 1:
        documents = documents.contiguous()
    if lengths is not None:
        lengths = lengths.to(device=documents.device, dtype=torch.int32).contiguous()
    if mask is not None:
        mask = (mask if mask.dtype == torch.bool else mask != 0).to(documents.device)
        mask = mask.view(torch.uint8)  # the same bytes, no copy: a plain integer pointer for the kernel
    if block_m is None:
        block_m = max(lq, min(128, 1 << (lq * n_queries - 1).bit_length()))  # tl.arange needs a power of two
    block_m = max(block_m, lq)
    n_query_blocks = triton.cdiv(n_queries * lq, block_m)
    grid = (n_query_blocks * triton.cdiv(n_docs, docs_per_program),)
    kernel[grid](
        flat, documents, lengths, mask, out, n_queries * lq, n_docs, n_tokens, n_query_blocks,
        flat.stride(0), documents.stride(0), documents.stride(1),
        *(mask.stride() if mask is not None else (0, 0)), out.stride(0), out.stride(1),
        LQ=lq, DIM=dim, BLOCK_M=block_m, BLOCK_T=block_t, BLOCK_SCAN=_SCAN_TOKENS, DOCS=docs_per_program,
        HAS_LENGTHS=lengths is not None, HAS_MASK=mask is not None,
        num_warps=num_warps or (4 if block_m <= 64 else 8), num_stages=num_stages,
    )
    return out
