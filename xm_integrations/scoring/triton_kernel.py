"""MaxSim in one fused Triton kernel over padded half-precision document vectors (CUDA only).

:func:`xm_integrations.scoring.maxsim` dispatches here on CUDA for bf16/fp16 padded documents: the
similarity products run on the tensor cores with float32 accumulation, the max and the sum in
float32, the document mask is applied per token, and no row after a document's last real row is
read. Triton is imported on first use only, so this module imports on machines without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xm_integrations.errors import InvalidArgumentError

__all__ = ["maxsim_triton"]

_MAXSIM_KERNEL = None


def _real_ends(mask: Tensor) -> Tensor:
    """Each row's last real position + 1 (0 for a row without one), computed on the mask's device.

    The kernel reads a document's rows up to there and no further. Computed once per call rather
    than by each of the kernel's programs: with 64 queries every document is visited by 16
    programs, and that per-program scan cost 20% on an H200.
    """
    width = mask.shape[1]
    dtype = torch.int16 if width < 2**15 else torch.int32
    positions = torch.arange(1, width + 1, dtype=dtype, device=mask.device)
    return (mask * positions).amax(dim=1) if width else torch.zeros(mask.shape[0], dtype=dtype, device=mask.device)


def _maxsim_kernel():
    """Build (once) the Triton kernel; Triton is imported only here."""
    global _MAXSIM_KERNEL
    if _MAXSIM_KERNEL is not None:
        return _MAXSIM_KERNEL
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, d_ptr, len_ptr, mask_ptr, holes_ptr, out_ptr, n_rows, n_docs, n_tokens, n_query_blocks,
               stride_q, stride_dn, stride_dt, stride_mn, stride_mt, stride_oq, stride_od,
               LQ: tl.constexpr, DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr,
               DOCS: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr):
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
                if HAS_LENGTHS:
                    length = tl.minimum(tl.load(len_ptr + doc), n_tokens)
                else:
                    length = n_tokens
                if HAS_MASK:
                    mask_row = mask_ptr + doc64 * stride_mn
                    holes = tl.load(holes_ptr + doc)
                best = tl.full([BLOCK_M], float("-inf"), tl.float32)
                for t0 in range(0, length, BLOCK_T):
                    toks = t0 + tl.arange(0, BLOCK_T)
                    d = tl.load(d_ptr + doc64 * stride_dn + toks[:, None] * stride_dt + dims[None, :],
                                mask=toks[:, None] < length, other=0.0)
                    s = tl.dot(q, tl.trans(d))
                    valid = toks < length
                    if HAS_MASK:
                        if holes != 0:  # only documents whose real rows are not a prefix read their mask
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
            rows up to its last real one, and only documents with holes read their mask, both found
            on the device before the launch: nothing is synchronised or copied to the host, and the
            padding after the last real row is never read.

    A document without real tokens scores 0. The similarity products run on the tensor cores with
    float32 accumulation; the max and the sum are float32. Each document row is read once per
    block of ``block_m`` query tokens, and the scores are written in place into the result.
    """
    if queries.dim() != 3 or documents.dim() != 3:
        raise InvalidArgumentError("queries must be (n, tokens, dim) and documents (n, max_tokens, dim)")
    if queries.shape[-1] != documents.shape[-1]:
        raise InvalidArgumentError(f"dimension mismatch: queries {queries.shape[-1]}, documents {documents.shape[-1]}")
    if not (queries.is_cuda and documents.is_cuda):
        raise InvalidArgumentError("maxsim_triton runs on CUDA tensors")
    if queries.device != documents.device:
        raise InvalidArgumentError(f"queries are on {queries.device} and documents on {documents.device}: move both to one "
                         "device")
    if mask is not None and mask.shape != documents.shape[:2]:
        raise InvalidArgumentError(f"mask must have shape {tuple(documents.shape[:2])}, got {tuple(mask.shape)}")
    triton, kernel = _maxsim_kernel()
    dim = documents.shape[-1]
    if dim & (dim - 1) or dim < 16:
        raise InvalidArgumentError(f"dim must be a power of two >= 16, got {dim}")
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
    holes = None
    if mask is not None:
        mask = (mask if mask.dtype == torch.bool else mask != 0).to(documents.device)
        if lengths is None:
            lengths = _real_ends(mask)
            # A document whose real rows are exactly [0, end) (a prefix: the usual padding) needs no
            # mask in the kernel; the per-token mask reads cost 20% with 64 queries on an H200.
            holes = (mask.sum(dim=1, dtype=lengths.dtype) != lengths).to(torch.int8)
        else:
            holes = torch.ones(n_docs, dtype=torch.int8, device=documents.device)
        mask = mask.view(torch.uint8)  # the same bytes, no copy: a plain integer pointer for the kernel
    if lengths is not None:
        lengths = lengths.to(device=documents.device, dtype=torch.int32).contiguous()
    if block_m is None:
        block_m = max(lq, min(128, 1 << (lq * n_queries - 1).bit_length()))  # tl.arange needs a power of two
    block_m = max(block_m, lq)
    n_query_blocks = triton.cdiv(n_queries * lq, block_m)
    grid = (n_query_blocks * triton.cdiv(n_docs, docs_per_program),)
    # Triton launches on the current device, not the tensors': documents on cuda:1 while the
    # current device is cuda:0 would be read from the wrong GPU.
    with torch.cuda.device(documents.device):
        kernel[grid](
            flat, documents, lengths, mask, holes, out, n_queries * lq, n_docs, n_tokens, n_query_blocks,
            flat.stride(0), documents.stride(0), documents.stride(1),
            *(mask.stride() if mask is not None else (0, 0)), out.stride(0), out.stride(1),
            LQ=lq, DIM=dim, BLOCK_M=block_m, BLOCK_T=block_t, DOCS=docs_per_program,
            HAS_LENGTHS=lengths is not None, HAS_MASK=mask is not None,
            num_warps=num_warps or (4 if block_m <= 64 else 8), num_stages=num_stages,
        )
    return out
