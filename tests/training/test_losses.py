"""ColBERTXMLoss against a line-by-line re-implementation of colbert-ai 0.2.22's training loss on the same batch.

The reference transcribes ``colbert/modeling/colbert.py`` (``ColBERT.forward``, ``score``,
``colbert_score_reduce``, ``compute_ib_loss``) and ``colbert/training/training.py`` (the pairwise
cross-entropy, ``loss += ib_loss``) for ``interaction="colbert"``, with its index lists and its
-9999 padding fill, on the embeddings the model gives for the batch.
"""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import NEGATIVES, ROWS
from xm_integrations.errors import InvalidArgumentError
from xm_integrations.training import ColBERTXMDataCollator, ColBERTXMLoss, LanguageRouting, colbert_ai_loss_terms


def _flatten(lists):
    return [item for sub in lists for item in sub]


def _colbert_score_reduce(scores_padded, d_mask):
    scores_padded = scores_padded.clone()
    d_padding = ~d_mask.view(scores_padded.size(0), scores_padded.size(1)).bool()
    scores_padded[d_padding] = -9999
    return scores_padded.max(1).values.sum(-1)


def _colbert_ai_loss(q, d, d_mask, nway):
    """colbert-ai: scores of each query against its nway documents, CE with label 0, plus compute_ib_loss."""
    q_duplicated = q.repeat_interleave(nway, dim=0).contiguous()
    scores = _colbert_score_reduce(d @ q_duplicated.permute(0, 2, 1), d_mask)
    scores = scores.view(-1, nway)
    labels = torch.zeros(q.size(0), dtype=torch.long)
    loss = torch.nn.CrossEntropyLoss()(scores, labels[: scores.size(0)])
    # compute_ib_loss
    ib_scores = (d.unsqueeze(0) @ q.permute(0, 2, 1).unsqueeze(1)).flatten(0, 1)
    ib_scores = _colbert_score_reduce(ib_scores, d_mask.repeat(q.size(0), 1, 1))
    all_except_self_negatives = [
        list(range(qidx * d.size(0), qidx * d.size(0) + nway * qidx + 1))
        + list(range(qidx * d.size(0) + nway * (qidx + 1), qidx * d.size(0) + d.size(0)))
        for qidx in range(q.size(0))
    ]
    ib_scores = ib_scores[_flatten(all_except_self_negatives)].view(q.size(0), -1)
    ib_labels = torch.arange(0, q.size(0)) * nway
    ib_loss = torch.nn.CrossEntropyLoss()(ib_scores, ib_labels)
    return loss, ib_loss


def _batch(model, nway: int):
    rows = []
    for index, row in enumerate(ROWS):
        new = {"query": row["query"], "positive": row["passage"]}
        for k in range(1, nway):
            new[f"negative_{k}"] = NEGATIVES[(index + k) % len(NEGATIVES)]
        new["language"] = row["language"]
        rows.append(new)
    collator = ColBERTXMDataCollator(preprocess_fn=model.preprocess, routing=LanguageRouting(model))
    batch = collator(rows)
    columns = ["query", "positive", *[f"negative_{k}" for k in range(1, nway)]]
    return [{key[len(name) + 1:]: value for key, value in batch.items() if key.startswith(name + "_")} for name in columns]


@pytest.mark.parametrize("nway", [2, 3])
def test_equals_colbert_ai_computation(colbert, nway: int) -> None:
    """In float64, so that the 1e-6 bound measures the computation, not float32 summation order."""
    colbert.eval().double()
    features = _batch(colbert, nway)
    with torch.no_grad():
        terms = ColBERTXMLoss(colbert)(features)
        q_out = colbert(dict(features[0]), task="query")
        q = q_out["token_embeddings"]
        assert bool(q_out["attention_mask"].all())  # colbert-ai scores every query position (mask augmentation)
        docs = [colbert(dict(column), task="document") for column in features[1:]]
    width = max(out["token_embeddings"].shape[1] for out in docs)
    # colbert-ai's D: query-major, (query 0: positive, negatives...), (query 1: ...), padded to one width
    d = torch.stack([torch.nn.functional.pad(out["token_embeddings"], (0, 0, 0, width - out["token_embeddings"].shape[1]))
                     for out in docs], dim=1).flatten(0, 1)
    d_mask = torch.stack([torch.nn.functional.pad(out["attention_mask"].bool(), (0, width - out["attention_mask"].shape[1]))
                          for out in docs], dim=1).flatten(0, 1)
    pairwise, in_batch = _colbert_ai_loss(q, d, d_mask, nway)
    training = ColBERTXMLoss(colbert)(features)  # with gradients: the differentiable MaxSim
    assert training["pairwise"].requires_grad
    for computed in (terms, training):
        assert computed["pairwise"].item() == pytest.approx(pairwise.item(), abs=1e-6)
        assert computed["in_batch"].item() == pytest.approx(in_batch.item(), abs=1e-6)
    assert pairwise.item() > 0.01 and in_batch.item() > 0.01  # not a degenerate batch


def test_terms_on_random_scores_and_bad_input(colbert) -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(5, 8, 16, generator=generator), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(15, 11, 16, generator=generator), dim=-1)
    d_mask = torch.rand(15, 11, generator=generator) > 0.3
    d_mask[:, 0] = True
    scores = colbert.similarity(q, d, a_mask=torch.ones(5, 8, dtype=torch.bool), b_mask=d_mask)
    terms = colbert_ai_loss_terms(scores, 3)
    pairwise, in_batch = _colbert_ai_loss(q, d * d_mask[..., None], d_mask, 3)
    assert terms["pairwise"].item() == pytest.approx(pairwise.item(), abs=1e-6)
    assert terms["in_batch"].item() == pytest.approx(in_batch.item(), abs=1e-6)
    assert set(colbert_ai_loss_terms(scores, 3, in_batch_negatives=False)) == {"pairwise"}
    with pytest.raises(InvalidArgumentError, match="nway"):
        colbert_ai_loss_terms(scores, 4)
    with pytest.raises(InvalidArgumentError, match="negative"):
        ColBERTXMLoss(colbert)(_batch(colbert, 2)[:2])
