"""ColBERTXM.similarity under training: differentiable (stock losses' arguments), fast kernel kept for inference."""

from __future__ import annotations

import pytest
import sentence_transformers.util.similarity as stock_similarity_module
import torch

import xm_integrations.scoring.stock_arguments as stock_arguments


def _reference(q, d, q_mask, d_mask, pairwise):
    """Brute force: every token product, padding excluded, max over document tokens, sum over query tokens."""
    sims = torch.einsum("qid,pjd->qpij", q, d)
    sims = sims.masked_fill(~d_mask[None, :, None, :], float("-inf")).amax(-1)
    scores = (sims * q_mask[:, None, :]).sum(-1)
    return scores.diagonal() if pairwise else scores


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(3, 6, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    d = torch.randn(3, 9, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    q_mask = torch.rand(3, 6, generator=generator) > 0.2
    d_mask = torch.rand(3, 9, generator=generator) > 0.3
    d_mask[:, 0] = q_mask[:, 0] = True
    return q, d, q_mask, d_mask


@pytest.mark.parametrize("pairwise", [False, True])
def test_gradients_equal_brute_force(colbert, monkeypatch: pytest.MonkeyPatch, pairwise: bool) -> None:
    def no_fast_path(*args, **kwargs):
        raise AssertionError("the buffer-reusing maxsim has no backward; training must not reach it")

    monkeypatch.setattr(stock_arguments, "maxsim", no_fast_path)
    monkeypatch.setattr(stock_arguments, "maxsim_pairwise", no_fast_path)
    q, d, q_mask, d_mask = _inputs()
    method = colbert.similarity_pairwise if pairwise else colbert.similarity
    ours = method(q, d, a_mask=q_mask, b_mask=d_mask, chunk_elements=10_000)
    ours.sum().backward()
    our_grads = q.grad.clone(), d.grad.clone()
    q.grad = d.grad = None
    reference = _reference(q, d, q_mask, d_mask, pairwise)
    reference.sum().backward()
    torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(our_grads[0], q.grad)
    torch.testing.assert_close(our_grads[1], d.grad)


def test_our_option_names_under_autograd(colbert) -> None:
    q, d, q_mask, d_mask = _inputs(1)
    ours = colbert.similarity(q, d, query_mask=q_mask, document_mask=d_mask, memory_budget=4096, chunk_size=2)
    torch.testing.assert_close(ours.double(), _reference(q, d, q_mask, d_mask, False), rtol=1e-6, atol=1e-5)
    with pytest.raises(TypeError, match="both a_mask= and query_mask="):
        colbert.similarity(q, d, a_mask=q_mask, query_mask=q_mask)


def test_inference_keeps_the_fast_path(colbert, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_stock(*args, **kwargs):
        raise AssertionError("inference must keep xm_integrations' maxsim")

    monkeypatch.setattr(stock_similarity_module, "maxsim", no_stock)
    q, d, q_mask, d_mask = _inputs(2)
    with torch.no_grad():
        scores = colbert.similarity(q, d, a_mask=q_mask, b_mask=d_mask)
    torch.testing.assert_close(scores.double(), _reference(q, d, q_mask, d_mask, False).detach(), rtol=1e-6, atol=1e-5)
    plain = colbert.similarity(q.detach(), d.detach(), a_mask=q_mask, b_mask=d_mask)  # no input needs gradients
    assert not plain.requires_grad
