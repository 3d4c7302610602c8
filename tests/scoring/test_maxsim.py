"""MaxSim scoring against an independent float64 NumPy brute force.

Tolerances. Every comparison uses the same inputs on both sides (half-precision inputs are rounded
first and the reference is computed on the rounded values upcast to float64), so input rounding
cancels and the only error left is the float32 accumulation inside :mod:`xm_integrations.maxsim`.
For one score that error is bounded by the textbook dot-product bound (Higham, gamma_n ~ n*u):

    |ours - ref| <= (dim + q_tokens) * u32 * sum_t max_u sum_k |q[t,k] * d[u,k]|,   u32 = 2**-24

(a max moves by at most the error of its arguments; the token sum adds q_tokens * u32 of the sum of
the magnitudes). For the shapes below (dim <= 64, <= 12 query tokens) that is ~5e-6 of the score
magnitude: the "~1e-5 relative" of fp32. It is the same bound for bf16 and fp16 inputs because we
accumulate them in float32; a kernel that rounded each similarity to bf16 (what stock
sentence-transformers does) could be off by 2**-9 ~ 2e-3 relative per term and would fail it. As a
looser second line, half-precision results are also checked against ``rtol=1e-3``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xm_integrations.scoring import PackedTokens, maxsim, maxsim_pairwise, pack_token_embeddings, pad_token_embeddings
from xm_integrations.scoring.chunking import _doc_bytes, _doc_chunks, _ragged_chunks

U32 = 2.0**-24


# ----------------------------------------------------------------------------- reference ----------


def ref_maxsim(queries: list[np.ndarray], documents: list[np.ndarray], reduce: str = "sum") -> np.ndarray:
    """Brute-force float64 MaxSim with explicit loops. Empty query or document scores 0."""
    out = np.zeros((len(queries), len(documents)), dtype=np.float64)
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            if len(q) == 0 or len(d) == 0:
                continue
            sims = np.einsum("tk,uk->tu", q.astype(np.float64), d.astype(np.float64))
            score = sims.max(axis=1).sum()
            out[i, j] = score / len(q) if reduce == "mean" else score
    return out


def accumulation_bound(queries: list[np.ndarray], documents: list[np.ndarray], reduce: str = "sum") -> np.ndarray:
    """The float32 accumulation error bound of the module docstring, per score."""
    out = np.zeros((len(queries), len(documents)), dtype=np.float64)
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            if len(q) == 0 or len(d) == 0:
                continue
            magnitude = np.einsum("tk,uk->tu", np.abs(q), np.abs(d)).max(axis=1).sum()
            bound = 1.01 * (q.shape[1] + len(q) + 2) * U32 * magnitude
            out[i, j] = bound / len(q) if reduce == "mean" else bound
    return out + 1e-12


def ragged(seed: int, n: int, max_len: int, dim: int, min_len: int = 0, dtype=torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    return [torch.randn(int(length), dim, generator=g).to(dtype) for length in lengths]


def as_np(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    return [t.double().numpy() for t in tensors]


def assert_scores(ours: torch.Tensor, queries, documents, reduce: str = "sum", *, rtol_half: float | None = None) -> None:
    ref = ref_maxsim(as_np(queries), as_np(documents), reduce)
    bound = accumulation_bound(as_np(queries), as_np(documents), reduce)
    got = ours.double().cpu().numpy()
    assert got.shape == ref.shape
    assert not np.isnan(got).any()
    err = np.abs(got - ref)
    assert (err <= bound).all(), f"max error {err.max():.3g}, worst ratio to bound {(err / bound).max():.3g}"
    if rtol_half is not None:
        np.testing.assert_allclose(got, ref, rtol=rtol_half, atol=rtol_half * np.abs(ref).max())


@pytest.fixture(scope="module")
def data():
    queries = ragged(1, 7, 12, 32, min_len=1)
    documents = ragged(2, 60, 20, 32, min_len=1)
    return queries, documents


# ----------------------------------------------------------------------------- correctness --------


def test_list_inputs_fp32(data):
    queries, documents = data
    out = maxsim(queries, documents)
    assert out.dtype == torch.float32 and out.shape == (7, 60)
    assert_scores(out, queries, documents)


def test_padded_and_mask_inputs_fp32(data):
    queries, documents = data
    q_pad, q_mask = pad_token_embeddings(queries, padding_value=1e4)
    d_pad, d_mask = pad_token_embeddings(documents, padding_value=1e4)
    out = maxsim(q_pad, d_pad, query_mask=q_mask, document_mask=d_mask)
    assert_scores(out, queries, documents)
    # 0/1 integer masks (a tokenizer's attention mask) mean the same
    out_int = maxsim(q_pad, d_pad, query_mask=q_mask.long(), document_mask=d_mask.long())
    assert torch.equal(out, out_int)


def test_non_prefix_mask():
    """Masks need not be left-aligned (e.g. punctuation skiplists): holes are excluded too."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(3, 6, 16, generator=g)
    d = torch.randn(9, 10, 16, generator=g)
    q_mask = torch.rand(3, 6, generator=g) > 0.3
    d_mask = torch.rand(9, 10, generator=g) > 0.4
    q_mask[:, 0] = True
    d_mask[:, 3] = True
    out = maxsim(q, d, query_mask=q_mask, document_mask=d_mask)
    queries = [q[i][q_mask[i]] for i in range(3)]
    documents = [d[j][d_mask[j]] for j in range(9)]
    assert_scores(out, queries, documents)


def test_packed_inputs(data):
    queries, documents = data
    out = maxsim(pack_token_embeddings(queries), pack_token_embeddings(documents))
    assert_scores(out, queries, documents)
    uniform = [torch.randn(8, 32) for _ in range(5)]
    store = PackedTokens.from_list(uniform)
    assert store.uniform_length == 8 and len(store) == 5 and torch.equal(store[3], uniform[3])
    assert_scores(maxsim(queries, store), queries, uniform)


def test_numpy_inputs(data):
    queries, documents = data
    out = maxsim([q.numpy() for q in queries], [d.numpy() for d in documents])
    assert_scores(out, queries, documents)


def test_reduce_mean(data):
    queries, documents = data
    out = maxsim(queries, documents, reduce="mean")
    assert_scores(out, queries, documents, reduce="mean")
    assert torch.allclose(out * torch.tensor([len(q) for q in queries]).unsqueeze(1), maxsim(queries, documents))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_accumulates_in_float32(data, dtype):
    queries = [q.to(dtype) for q in data[0]]
    documents = [d.to(dtype) for d in data[1]]
    out = maxsim(queries, documents)
    assert out.dtype == torch.float32
    assert_scores(out, queries, documents, rtol_half=1e-3)
    d_pad, d_mask = pad_token_embeddings(documents, padding_value=1e4)  # 1e4 fits fp16 and bf16
    # padded path vs ragged path: same values up to BLAS shape-dependent rounding (a few ulps)
    padded = maxsim(queries, d_pad, document_mask=d_mask)
    torch.testing.assert_close(padded, out, rtol=0, atol=4 * U32 * out.abs().max().item())
    pair = maxsim_pairwise(queries, documents[: len(queries)])
    assert pair.dtype == torch.float32
    ref = np.diag(ref_maxsim(as_np(queries), as_np(documents[: len(queries)])))
    bound = np.diag(accumulation_bound(as_np(queries), as_np(documents[: len(queries)])))
    assert (np.abs(pair.double().numpy() - ref) <= bound).all()


def test_float64_inputs_stay_float64(data):
    queries = [q.double() for q in data[0]]
    documents = [d.double() for d in data[1]]
    out = maxsim(queries, documents)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref_maxsim(as_np(queries), as_np(documents)), rtol=1e-12, atol=1e-12)


def test_agrees_with_sentence_transformers(data):
    """Where the semantics coincide (fp32, no empty items), stock and ours agree."""
    from sentence_transformers.util.similarity import maxsim as st_maxsim

    queries, documents = data
    np.testing.assert_allclose(maxsim(queries, documents).numpy(), st_maxsim(queries, documents).numpy(), rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- edge cases ---------


def test_empty_documents_score_zero():
    queries = ragged(4, 3, 6, 8, min_len=1)
    documents = [torch.randn(5, 8), torch.zeros(0, 8), torch.randn(1, 8), torch.zeros(0, 8)]
    for docs in (documents, pack_token_embeddings(documents)):
        out = maxsim(queries, docs)
        assert not out.isnan().any()
        assert (out[:, 1] == 0).all() and (out[:, 3] == 0).all()
        assert_scores(out, queries, documents)
    assert (maxsim_pairwise(queries, documents[1:4])[[0, 2]] == 0).all()
    # every document empty
    all_empty = [torch.zeros(0, 8)] * 4
    assert torch.equal(maxsim(queries, all_empty), torch.zeros(3, 4))
    assert torch.equal(maxsim_pairwise(queries, all_empty[:3]), torch.zeros(3))


def test_document_made_only_of_padding():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 4, 8, generator=g)
    d = torch.full((3, 5, 8), 1e4)
    d[0, :2] = torch.randn(2, 8, generator=g)
    d[2, :5] = torch.randn(5, 8, generator=g)
    d_mask = torch.zeros(3, 5, dtype=torch.bool)
    d_mask[0, :2] = True
    d_mask[2] = True
    out = maxsim(q, d, document_mask=d_mask)
    assert not out.isnan().any() and not out.isinf().any()
    assert (out[:, 1] == 0).all()
    assert_scores(out, list(q), [d[0, :2], d[1, :0], d[2]])
    pair = maxsim_pairwise(q, d[:2], document_mask=d_mask[:2])
    assert pair[1] == 0 and not pair.isnan().any()
    for reduce in ("sum", "mean"):
        assert not maxsim(q, d, document_mask=d_mask, reduce=reduce).isnan().any()


def test_empty_queries():
    documents = ragged(6, 5, 7, 8, min_len=1)
    queries = [torch.randn(3, 8), torch.zeros(0, 8)]
    for reduce in ("sum", "mean"):
        out = maxsim(queries, documents, reduce=reduce)
        assert (out[1] == 0).all() and not out.isnan().any()
        assert_scores(out, queries, documents, reduce)
        pair = maxsim_pairwise(queries, documents[:2], reduce=reduce)
        assert pair[1] == 0 and not pair.isnan().any()
    q_pad = torch.full((2, 3, 8), float("nan"))
    q_mask = torch.zeros(2, 3, dtype=torch.bool)
    q_pad[0] = queries[0]
    q_mask[0] = True
    assert torch.equal(maxsim(q_pad, documents, query_mask=q_mask), maxsim(queries, documents))
    # an empty query list gives an empty result with the documents' width
    assert maxsim([], documents).shape == (0, 5)
    assert maxsim(torch.zeros(0, 4, 8), documents).shape == (0, 5)
    assert maxsim(queries, []).shape == (2, 0)
    assert maxsim_pairwise([], []).shape == (0,)


def test_query_longer_than_every_document():
    queries = [torch.randn(40, 16)]
    documents = ragged(7, 10, 5, 16, min_len=1)
    out = maxsim(queries, documents)
    assert_scores(out, queries, documents)
    pair = maxsim_pairwise(queries * len(documents), documents)
    assert_scores(pair.reshape(1, -1), queries, documents)


def _with_holes(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded (padding 1e4) behind a mask that is not a prefix: token ``k`` of item ``i`` sits at
    position ``2k + i % 2``, so real tokens alternate with padding, odd items start with padding,
    and every item has padding after its last real token."""
    width = 2 * max(len(t) for t in tensors) + 1
    padded = tensors[0].new_full((len(tensors), width, tensors[0].shape[1]), 1e4)
    mask = torch.zeros(len(tensors), width, dtype=torch.bool, device=tensors[0].device)
    for i, t in enumerate(tensors):
        positions = torch.arange(len(t), device=t.device) * 2 + i % 2
        padded[i, positions] = t
        mask[i, positions] = True
    return padded, mask


def _in_form(tensors: list[torch.Tensor], form: str):
    """``tensors`` as a list, a padded tensor (padding 1e4, which would win any max it entered) plus
    its prefix mask, the same with holes between the real tokens (:func:`_with_holes`), or a
    PackedTokens store. Returns ``(inputs, mask)``."""
    if form == "list":
        return tensors, None
    if form == "padded":
        return pad_token_embeddings(tensors, padding_value=1e4)
    if form == "holes":
        return _with_holes(tensors)
    return pack_token_embeddings(tensors), None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("query_form", ["list", "padded", "holes", "packed"])
@pytest.mark.parametrize("document_form", ["list", "padded", "holes", "packed"])
def test_empty_documents_and_long_queries_in_every_form_and_dtype(dtype, query_form, document_form):
    """The edge cases of the contract in every input form, fp32 and bf16, against float64 NumPy.

    Random ragged documents of 0-9 tokens (several empty), queries of 1-12 tokens plus one of 40
    tokens, longer than every document; padded forms behind prefix masks and masks with holes.
    Tolerance: the float32 accumulation bound of the module
    docstring, for bf16 too (both sides see the same rounded inputs); bf16 is also held to
    rtol=1e-3. Empty documents score exactly 0.0, never NaN; 1e4 padding never enters a max.
    """
    queries = ragged(12, 5, 12, 24, min_len=1, dtype=dtype)
    queries.append(torch.randn(40, 24, generator=torch.Generator().manual_seed(13)).to(dtype))
    documents = ragged(14, 40, 9, 24, min_len=0, dtype=dtype)
    for index in (0, 7, 39):
        documents[index] = documents[index][:0]
    assert max(len(d) for d in documents) < 40 and sum(len(d) == 0 for d in documents) >= 3
    empty = [j for j, d in enumerate(documents) if len(d) == 0]
    q_in, q_mask = _in_form(queries, query_form)
    d_in, d_mask = _in_form(documents, document_form)
    rtol_half = None if dtype == torch.float32 else 1e-3
    for reduce in ("sum", "mean"):
        out = maxsim(q_in, d_in, query_mask=q_mask, document_mask=d_mask, reduce=reduce)
        assert out.dtype == torch.float32 and out.shape == (6, 40)
        assert_scores(out, queries, documents, reduce, rtol_half=rtol_half)
        assert (out[:, empty] == 0).all()
    # pairwise: the 40-token query against every document, and each short query against its own
    pair_queries = [queries[-1]] * len(documents)
    pq_in, pq_mask = _in_form(pair_queries, query_form)
    pair = maxsim_pairwise(pq_in, d_in, query_mask=pq_mask, document_mask=d_mask)
    assert pair.dtype == torch.float32
    assert_scores(pair.reshape(1, -1), queries[-1:], documents, rtol_half=rtol_half)
    assert (pair[empty] == 0).all()


def test_huge_padding_values_do_not_change_scores(data):
    queries, documents = data
    q_zero, q_mask = pad_token_embeddings(queries)
    d_zero, d_mask = pad_token_embeddings(documents)
    q_huge, _ = pad_token_embeddings(queries, padding_value=1e4)
    d_huge, _ = pad_token_embeddings(documents, padding_value=1e4)
    base = maxsim(q_zero, d_zero, query_mask=q_mask, document_mask=d_mask)
    assert torch.equal(maxsim(q_huge, d_huge, query_mask=q_mask, document_mask=d_mask), base)
    d_neg, _ = pad_token_embeddings(documents, padding_value=-1e4)  # would win a multiply-by-zero mask
    assert torch.equal(maxsim(q_zero, d_neg, query_mask=q_mask, document_mask=d_mask), base)
    n = len(queries)
    base_pair = maxsim_pairwise(q_zero, d_zero[:n], query_mask=q_mask, document_mask=d_mask[:n])
    huge_pair = maxsim_pairwise(q_huge, d_huge[:n], query_mask=q_mask, document_mask=d_mask[:n])
    assert torch.equal(base_pair, huge_pair)


def test_negative_similarities_are_not_beaten_by_padding():
    """All real similarities negative: a zero-multiplied padding token would win the max with 0."""
    q = torch.ones(1, 2, 4)
    d = torch.zeros(1, 3, 4)
    d[0, 0] = -1.0
    d_mask = torch.tensor([[True, False, False]])
    assert maxsim(q, d, document_mask=d_mask).item() == -8.0
    assert maxsim_pairwise(q, d, document_mask=d_mask).item() == -8.0


# ----------------------------------------------------------------------------- chunking -----------


def test_chunking_gives_identical_results():
    """Chunk boundaries never change a score beyond float32 rounding. Not bitwise: the BLAS picks its
    kernel (and so its summation order inside one 32-term dot product) by matrix shape, and chunking
    changes the shapes; the differences seen are ~1 ulp (5e-8 relative), far below the accumulation
    bound checked elsewhere. Documents are never mixed across chunks, so no chunking can leak padding
    or another document's tokens into a score."""
    queries = ragged(8, 9, 10, 32, min_len=0)
    documents = ragged(9, 150, 25, 32, min_len=0)
    base = maxsim(queries, documents)
    assert_scores(base, queries, documents)
    tight = 4 * U32 * base.abs().max().item()  # a few ulps of the largest score
    d_pad, d_mask = pad_token_embeddings(documents)
    store = pack_token_embeddings(documents)
    for kwargs in (
        {"chunk_size": 1},
        {"chunk_size": 2},
        {"chunk_size": 7},
        {"chunk_size": 64},
        {"chunk_size": 10_000},
        {"query_chunk_size": 1},
        {"query_chunk_size": 4, "chunk_size": 3},
        {"memory_budget": 1},
        {"memory_budget": 50_000},
        {"memory_budget": 2**30},
    ):
        for docs, mask in ((documents, None), (d_pad, d_mask), (store, None)):
            out = maxsim(queries, docs, document_mask=mask, **kwargs)
            torch.testing.assert_close(out, base, rtol=0, atol=tight, msg=str(kwargs))
    pair = maxsim_pairwise(queries, documents[:9])
    for kwargs in ({"chunk_size": 1}, {"chunk_size": 2}, {"chunk_size": 5}, {"chunk_size": 100}, {"memory_budget": 1}):
        out = maxsim_pairwise(queries, documents[:9], **kwargs)
        torch.testing.assert_close(out, pair, rtol=0, atol=tight, msg=str(kwargs))


def test_chunks_bound_the_similarity_block(monkeypatch):
    """Scoring never builds more than a budget's worth of similarities, whatever the corpus size."""
    largest = []
    real_mm = torch.mm

    def recording_mm(a, b, *args, **kwargs):
        out = real_mm(a, b, *args, **kwargs)
        largest.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(torch, "mm", recording_mm)
    budget = 2**20
    query = torch.randn(1, 32, 64)
    uniform = PackedTokens(torch.randn(4000 * 16, 64), torch.arange(4001) * 16)
    lengths = torch.randint(0, 33, (4000,), generator=torch.Generator().manual_seed(0))
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    ragged_docs = PackedTokens(torch.randn(int(offsets[-1]), 64), offsets)
    for docs in (uniform, ragged_docs, [ragged_docs[i] for i in range(len(ragged_docs))]):
        largest.clear()
        maxsim(query, docs, memory_budget=budget)
        assert largest and max(largest) <= budget
        assert len(largest) > 1  # it did chunk (the full block would be ~4000*16*32*4 = 8 MiB)


def test_plan_for_one_query_against_a_million_documents():
    """1 query x 32 tokens x 128 dims against 1M documents of 32 tokens (the benchmark): every chunk
    stays within the default budget, far from the 4 GiB full similarity tensor."""
    from xm_integrations.scoring.chunking import DEFAULT_MEMORY_BUDGET_CPU

    ranges = _doc_chunks(1_000_000, 32, 32, 128, 4, DEFAULT_MEMORY_BUDGET_CPU, None)
    largest = max(end - start for start, end in ranges)
    assert largest * _doc_bytes(32, 32, 128, 4) <= DEFAULT_MEMORY_BUDGET_CPU
    assert ranges[0][0] == 0 and ranges[-1][1] == 1_000_000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # ragged: chunks hold a token budget, so one long outlier only sizes its own chunk
    lengths = torch.tensor([4] * 1000 + [4000] + [4] * 1000)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    ranges = _ragged_chunks(offsets, 32, 128, 4, 2**20, None)
    assert (1000, 1001) in ranges and ranges[0][1] - ranges[0][0] > 100
    assert ranges[0][0] == 0 and ranges[-1][1] == 2001 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for start, end in ranges:
        if end - start > 1:
            tokens = int(offsets[end] - offsets[start])
            assert tokens * (32 + 128) * 4 + (end - start) * (32 * 4 + 16) <= 2**20


# ----------------------------------------------------------------------------- pairwise -----------


def test_pairwise_matches_diagonal():
    queries = ragged(10, 20, 9, 24, min_len=0)
    documents = ragged(11, 20, 14, 24, min_len=0)
    full = maxsim(queries, documents)
    for reduce in ("sum", "mean"):
        pair = maxsim_pairwise(queries, documents, reduce=reduce)
        assert pair.shape == (20,) and not pair.isnan().any()
        ref = np.diag(ref_maxsim(as_np(queries), as_np(documents), reduce))
        bound = np.diag(accumulation_bound(as_np(queries), as_np(documents), reduce))
        assert (np.abs(pair.double().numpy() - ref) <= bound).all()
    torch.testing.assert_close(maxsim_pairwise(queries, documents), torch.diag(full), rtol=1e-6, atol=1e-5)
    q_pad, q_mask = pad_token_embeddings(queries, padding_value=1e4)
    d_pad, d_mask = pad_token_embeddings(documents, padding_value=1e4)
    padded = maxsim_pairwise(q_pad, d_pad, query_mask=q_mask, document_mask=d_mask)
    torch.testing.assert_close(padded, maxsim_pairwise(queries, documents), rtol=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- errors -------------


def test_errors_are_clear(data):
    queries, documents = data
    with pytest.raises(ValueError, match=r"queries have dim 32, documents have dim 16"):
        maxsim(queries, [torch.randn(3, 16)])
    with pytest.raises(ValueError, match=r"queries have dim 32, documents have dim 16"):
        maxsim_pairwise(queries[:1], [torch.randn(3, 16)])
    d_pad, d_mask = pad_token_embeddings(documents)
    with pytest.raises(ValueError, match=r"document_mask.*shape.*\(60, 20\)"):
        maxsim(queries, d_pad, document_mask=d_mask[:, :5])
    with pytest.raises(ValueError, match=r"query_mask"):
        maxsim(queries, documents, query_mask=torch.ones(7, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"single 2-D tensor"):
        maxsim(queries[0], documents)
    with pytest.raises(ValueError, match=r"reduce"):
        maxsim(queries, documents, reduce="max")
    with pytest.raises(ValueError, match=r"chunk_size"):
        maxsim(queries, documents, chunk_size=0)
    with pytest.raises(ValueError, match=r"as many queries as documents, got 7 and 60"):
        maxsim_pairwise(queries, documents)
    with pytest.raises(ValueError, match=r"documents\[1\]` has dim 8"):
        maxsim(queries, [torch.randn(2, 32), torch.randn(2, 8)])
    with pytest.raises(ValueError, match=r"offsets"):
        PackedTokens(torch.randn(5, 4), torch.tensor([0, 2, 4]))


def test_pad_and_pack_helpers():
    tensors = [torch.randn(3, 4), torch.zeros(0, 4), torch.randn(5, 4)]
    padded, mask = pad_token_embeddings(tensors, padding_value=-7.0)
    assert padded.shape == (3, 5, 4) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [3, 0, 5]
    assert torch.equal(padded[0, :3], tensors[0]) and (padded[0, 3:] == -7).all() and (padded[1] == -7).all()
    assert torch.equal(padded[2], tensors[2])
    padded, mask = pad_token_embeddings([torch.zeros(0, 4, dtype=torch.bfloat16)] * 2)
    assert padded.shape == (2, 0, 4) and padded.dtype == torch.bfloat16 and mask.shape == (2, 0)
    assert pad_token_embeddings([], dim=6)[0].shape == (0, 0, 6)
    with pytest.raises(ValueError, match="dim="):
        pad_token_embeddings([])
    store = pack_token_embeddings(tensors)
    assert store.lengths.tolist() == [3, 0, 5] and store.uniform_length is None
    assert torch.equal(store[2], tensors[2]) and store[1].shape == (0, 4)
    padded, mask = pad_token_embeddings(tensors)
    again = PackedTokens.from_padded(padded, mask)
    assert torch.equal(again.tokens, store.tokens) and torch.equal(again.offsets, store.offsets)


# ----------------------------------------------------------------------------- CUDA ---------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_cpu(data, dtype):
    queries = [q.to(dtype) for q in data[0]]
    documents = [d.to(dtype) for d in data[1]]
    cpu = maxsim(queries, documents)
    gpu_docs = [d.cuda() for d in documents]
    gpu = maxsim(queries, gpu_docs)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert_scores(gpu, queries, documents)
    d_pad, d_mask = pad_token_embeddings(gpu_docs, padding_value=1e4)
    assert d_pad.device.type == "cuda"
    torch.testing.assert_close(maxsim(queries, d_pad, document_mask=d_mask).cpu(), cpu, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(maxsim(queries, pack_token_embeddings(gpu_docs), chunk_size=7).cpu(), cpu, rtol=1e-5, atol=1e-4)
    pair = maxsim_pairwise([q.cuda() for q in queries], gpu_docs[: len(queries)])
    torch.testing.assert_close(pair.cpu(), maxsim_pairwise(queries, documents[: len(queries)]), rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- fused kernel dispatch


def _forbid_fused_kernel(monkeypatch) -> None:
    from xm_integrations.scoring import triton_kernel as maxsim_triton

    def forbidden(*args, **kwargs):
        raise AssertionError("maxsim_triton must not be called here")

    monkeypatch.setattr(maxsim_triton, "maxsim_triton", forbidden)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("document_form", ["list", "padded", "holes", "packed"])
def test_cpu_never_takes_the_fused_kernel(monkeypatch, dtype, document_form):
    """The Triton dispatch is CUDA-only: CPU half-precision inputs of a kernel-friendly shape keep the chunked path."""
    _forbid_fused_kernel(monkeypatch)
    queries = ragged(31, 3, 32, 64, min_len=1, dtype=dtype)
    documents = ragged(32, 20, 30, 64, min_len=0, dtype=dtype)
    d_in, d_mask = _in_form(documents, document_form)
    assert_scores(maxsim(queries, d_in, document_mask=d_mask), queries, documents, rtol_half=1e-3)


def _count_fused_calls(monkeypatch) -> list[int]:
    from xm_integrations.scoring import triton_kernel as maxsim_triton

    calls: list[int] = []
    real = maxsim_triton.maxsim_triton

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(maxsim_triton, "maxsim_triton", counting)
    return calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("query_form", ["list", "padded", "holes", "packed"])
@pytest.mark.parametrize("document_form", ["list", "padded", "holes", "packed", "uniform"])
def test_cuda_half_precision_takes_the_fused_kernel(monkeypatch, dtype, query_form, document_form):
    """bf16/fp16 on CUDA with dim a power of two: maxsim_triton for documents read in place (padded
    behind a prefix mask or a mask with holes, uniform PackedTokens), the chunked path for ragged
    ones; both against the float64 NumPy brute force.

    Ragged queries of 1-32 tokens (one empty), documents of 0-50 tokens (several empty; the
    padded forms pad with 1e4), both reductions, with and without chunk_size. Same tolerance as
    every half-precision test here (float32 accumulation bound, and rtol=1e-3).
    """
    pytest.importorskip("triton")
    calls = _count_fused_calls(monkeypatch)
    queries = ragged(41, 6, 32, 64, min_len=1, dtype=dtype)
    queries[2] = queries[2][:0]
    if document_form == "uniform":
        documents = [torch.randn(20, 64, generator=torch.Generator().manual_seed(i)).to(dtype) for i in range(50)]
    else:
        documents = ragged(42, 50, 50, 64, min_len=0, dtype=dtype)
        for index in (0, 9, 49):
            documents[index] = documents[index][:0]
    cuda_queries = [q.cuda() for q in queries]
    cuda_documents = [d.cuda() for d in documents]
    q_in, q_mask = _in_form(cuda_queries, query_form)
    d_in, d_mask = _in_form(cuda_documents, "packed" if document_form == "uniform" else document_form)
    for reduce in ("sum", "mean"):
        for chunk_size in (None, 7):
            calls.clear()
            out = maxsim(q_in, d_in, query_mask=q_mask, document_mask=d_mask, reduce=reduce, chunk_size=chunk_size)
            assert bool(calls) == (document_form in ("padded", "holes", "uniform")), calls
            assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == (6, 50)
            assert out.is_contiguous()
            assert_scores(out, queries, documents, reduce, rtol_half=1e-3)
            assert (out[2] == 0).all()
            empty = [j for j, d in enumerate(documents) if len(d) == 0]
            assert (out[:, empty] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_keeps_the_chunked_path_where_the_kernel_does_not_apply(monkeypatch):
    """float32, a dim that is not a power of two and mixed dtypes: the existing path, same scores."""
    _forbid_fused_kernel(monkeypatch)
    g = torch.Generator().manual_seed(51)
    queries = [torch.randn(8, 64, generator=g) for _ in range(3)]
    documents = [torch.randn(12, 64, generator=g) for _ in range(10)]
    assert_scores(maxsim([q.cuda() for q in queries], [d.cuda() for d in documents]), queries, documents)
    odd_q = [q[:, :48].bfloat16() for q in queries]
    odd_d = [d[:, :48].bfloat16() for d in documents]
    assert_scores(maxsim(odd_q, [d.cuda() for d in odd_d]), odd_q, odd_d, rtol_half=1e-3)
    half_d = [d.bfloat16() for d in documents]
    assert_scores(maxsim(queries, [d.cuda() for d in half_d]), queries, [d.double() for d in half_d])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fused_path_never_waits_for_the_gpu(monkeypatch):
    """Padded CUDA queries and documents, both masked with holes, empty queries and documents, both
    reductions: maxsim_triton scores them under ``torch.cuda.set_sync_debug_mode("error")`` (any
    host sync or blocking copy raises), against the float64 NumPy brute force. Then the edge cases
    with nothing to score (every document empty, zero-width queries), which the chunked path answers
    with an early exit, give 0.0 from the kernel too."""
    pytest.importorskip("triton")
    calls = _count_fused_calls(monkeypatch)
    queries = ragged(61, 5, 32, 128, min_len=1, dtype=torch.bfloat16)
    queries[1] = queries[1][:0]
    documents = ragged(62, 300, 120, 128, min_len=0, dtype=torch.bfloat16)
    documents[0], documents[123] = documents[0][:0], documents[123][:0]
    q_in, q_mask = _with_holes([q.cuda() for q in queries])
    d_in, d_mask = _with_holes([d.cuda() for d in documents])
    maxsim(q_in, d_in, query_mask=q_mask, document_mask=d_mask)  # compile the kernel before watching
    torch.cuda.synchronize()
    outs = {}
    torch.cuda.set_sync_debug_mode("error")
    try:
        for reduce in ("sum", "mean"):
            outs[reduce] = maxsim(q_in, d_in, query_mask=q_mask, document_mask=d_mask, reduce=reduce)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(calls) == 3
    for reduce, out in outs.items():
        assert out.shape == (5, 300) and out.is_contiguous()
        assert_scores(out, queries, documents, reduce, rtol_half=1e-3)
        assert (out[1] == 0).all() and (out[:, [0, 123]] == 0).all()
    calls.clear()
    no_tokens = torch.zeros(300, dtype=torch.bool, device="cuda").unsqueeze(1).expand(300, d_in.shape[1])
    zero_width = q_in[:, :0]
    for reduce in ("sum", "mean"):
        assert torch.equal(maxsim(q_in, d_in, query_mask=q_mask, document_mask=no_tokens, reduce=reduce),
                           torch.zeros(5, 300, device="cuda"))
        assert torch.equal(maxsim(zero_width, d_in, document_mask=d_mask, reduce=reduce), torch.zeros(5, 300, device="cuda"))
    assert len(calls) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_maxsim_triton_with_lengths_and_mask(dtype):
    """maxsim_triton directly, against the float64 NumPy brute force: ``lengths`` alone (the
    original signature, lengths past the width clamped, on the CPU or the GPU, left unchanged),
    ``mask`` alone (holes, so every row up to the last real one is looked at), both together (rows
    past ``lengths[j]`` excluded whatever the mask says), and neither (every row real)."""
    pytest.importorskip("triton")
    from xm_integrations.scoring.triton_kernel import maxsim_triton

    queries = ragged(71, 3, 32, 64, min_len=32, dtype=dtype)
    documents = ragged(72, 40, 30, 64, min_len=0, dtype=dtype)
    q = torch.stack(queries).cuda()
    padded, mask = _with_holes([d.cuda() for d in documents])
    width = padded.shape[1]
    lengths = torch.randint(0, width + 5, (40,), generator=torch.Generator().manual_seed(73))
    rows = [padded[j].cpu() for j in range(40)]
    by_lengths = [rows[j][: int(lengths[j])] for j in range(40)]
    for given in (lengths, lengths.cuda().int()):
        before = given.clone()
        assert_scores(maxsim_triton(q, padded, given), queries, by_lengths, rtol_half=1e-3)
        assert torch.equal(given, before)
    assert_scores(maxsim_triton(q, padded, mask=mask), queries, documents, rtol_half=1e-3)
    both = [rows[j][: int(lengths[j])][mask[j, : int(lengths[j])].cpu()] for j in range(40)]
    assert_scores(maxsim_triton(q, padded, lengths.cuda(), mask=mask), queries, both, rtol_half=1e-3)
    assert_scores(maxsim_triton(q, padded), queries, rows, rtol_half=1e-3)


def test_real_ends_are_last_real_positions_plus_one():
    """What the fused kernel reads up to (computed on the device): checked against a Python loop."""
    from xm_integrations.scoring.triton_kernel import _real_ends

    mask = torch.rand(50, 37, generator=torch.Generator().manual_seed(3)) > 0.6
    mask[0] = False  # no real token
    mask[1] = True
    expected = [max((t + 1 for t in range(37) if mask[row, t]), default=0) for row in range(50)]
    assert _real_ends(mask).tolist() == expected
    assert _real_ends(torch.zeros(4, 0, dtype=torch.bool)).tolist() == [0, 0, 0, 0]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_fused_kernel_runs_on_the_documents_device():
    """Documents on cuda:1 while the current device is cuda:0: Triton launches on the current
    device, so without a guard the kernel would read another GPU's memory. Scores equal the brute force."""
    pytest.importorskip("triton")
    queries = ragged(71, 3, 32, 128, min_len=1, dtype=torch.bfloat16)
    documents = ragged(72, 50, 64, 128, min_len=1, dtype=torch.bfloat16)
    with torch.cuda.device(0):
        q_in = pad_token_embeddings([q.to("cuda:1") for q in queries])[0]
        d_in, d_mask = pad_token_embeddings([d.to("cuda:1") for d in documents])
        out = maxsim(q_in, d_in, document_mask=d_mask)
    assert out.device == torch.device("cuda:1")
    assert_scores(out, queries, documents, rtol_half=1e-3)
    from xm_integrations.scoring.triton_kernel import maxsim_triton

    with pytest.raises(ValueError, match="move both to one device"):
        maxsim_triton(q_in.to("cuda:0"), d_in)

