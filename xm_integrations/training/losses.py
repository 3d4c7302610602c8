"""colbert-ai's training objective for ColBERT-XM, as a sentence-transformers multi-vector loss.

ColBERT-XM was trained with colbert-ai 0.2.22 on (query, positive, negative...) tuples, ``nway``
documents per query, with in-batch negatives on (``use_ib_negatives``). Its loss is the sum of two
cross-entropies over MaxSim scores (sum over query tokens of the best document token, no scale):

* **pairwise**: each query against its own ``nway`` documents, the positive first
  (``colbert/training/training.py``: ``CrossEntropyLoss()(scores.view(-1, nway), zeros)``);
* **in-batch**: each query against every document of the batch except its own negatives (its
  positive, and the positives and negatives of the other queries), the positive as target
  (``ColBERT.compute_ib_loss``, which picks those columns with index lists).

Here both come from one ``(queries, queries * nway)`` score matrix; the own negatives are masked
out of the in-batch term instead of being indexed away, which gives the same softmax.
``tests/training/test_losses.py`` checks it against a line-by-line re-implementation of
colbert-ai's code on the same batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xm_integrations.compat.sentence_transformers import embed_document_columns
from xm_integrations.errors import InvalidArgumentError

__all__ = ["ColBERTXMLoss", "colbert_ai_loss_terms"]


class ColBERTXMLoss(nn.Module):
    """colbert-ai's loss (pairwise + in-batch softmax cross-entropy) for ``ColBERTXM`` with the stock trainers.

    Dataset columns: ``(query, positive, negative_1, ..., negative_n)``, ``n >= 1`` (colbert-ai's
    triples are ``n = 1``, ``nway = 2``). Scores come from ``model.similarity`` (MaxSim,
    differentiable under training). The forward returns ``{"pairwise": ..., "in_batch": ...}``:
    the trainer sums them and logs each term.

    Args:
        model: The ``ColBERTXM`` (any ``MultiVectorEncoder``) being trained.
        in_batch_negatives: Add the in-batch term (colbert-ai's ``use_ib_negatives``); without it
            the loss is the pairwise term alone.

    Example::

        loss = ColBERTXMLoss(model)
        trainer = ColBERTXMTrainer(model=model, train_dataset=triples, loss=loss)
    """

    def __init__(self, model: Any, *, in_batch_negatives: bool = True) -> None:
        super().__init__()
        self.model = model
        self.in_batch_negatives = in_batch_negatives

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> dict[str, Tensor]:
        """Both terms for one batch; ``labels`` is ignored (the positive is the first document column)."""
        features = [dict(column) for column in sentence_features]
        if len(features) < 3:
            raise InvalidArgumentError(
                f"ColBERTXMLoss needs (query, positive, negative...) columns, got {len(features)} text column(s): "
                "add at least one negative column, or use MultiVectorMultipleNegativesRankingLoss for pairs."
            )
        queries, query_mask = self._embed(features[0], "query")
        documents_flat, documents_mask = _query_major(list(zip(*embed_document_columns(self.model, features[1:]))))
        scores = self.model.similarity(queries, documents_flat, a_mask=query_mask, b_mask=documents_mask)
        return colbert_ai_loss_terms(scores, len(features) - 1, in_batch_negatives=self.in_batch_negatives)

    def _embed(self, features: dict[str, Any], default_task: str) -> tuple[Tensor, Tensor]:
        outputs = self.model(features, task=features.get("task", default_task))
        return outputs["token_embeddings"], outputs["attention_mask"].bool()

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_batch_negatives": self.in_batch_negatives}

    @property
    def citation(self) -> str:
        return """
@inproceedings{santhanam-etal-2022-colbertv2,
    title = "{C}ol{BERT}v2: Effective and Efficient Retrieval via Lightweight Late Interaction",
    author = "Santhanam, Keshav and Khattab, Omar and Saad-Falcon, Jon and Potts, Christopher and Zaharia, Matei",
    booktitle = "Proceedings of NAACL-HLT 2022",
    year = "2022",
}
"""


def _query_major(columns: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The document columns as one ``(queries * nway, tokens, dim)`` batch: query 0's documents first, its positive first."""
    width = max(embeddings.shape[1] for embeddings, _ in columns)
    padded = [F.pad(embeddings, (0, 0, 0, width - embeddings.shape[1])) for embeddings, _ in columns]
    masks = [F.pad(mask, (0, width - mask.shape[1])) for _, mask in columns]
    stacked = torch.stack(padded, dim=1)
    return stacked.flatten(0, 1), torch.stack(masks, dim=1).flatten(0, 1)


def colbert_ai_loss_terms(scores: Tensor, nway: int, *, in_batch_negatives: bool = True) -> dict[str, Tensor]:
    """colbert-ai's two loss terms from the ``(n, n * nway)`` MaxSim matrix of ``n`` queries against their documents.

    ``scores[i, j * nway + k]`` is query ``i`` against document ``k`` of query ``j`` (``k = 0``: the
    positive).
    """
    n = scores.shape[0]
    if scores.shape[1] != n * nway:
        raise InvalidArgumentError(f"Expected {n} x {n * nway} scores for {n} queries and nway={nway}, got {tuple(scores.shape)}.")
    rows = torch.arange(n, device=scores.device)
    own = scores.view(n, n, nway)[rows, rows]  # (n, nway): each query's own documents
    zeros = torch.zeros(n, dtype=torch.long, device=scores.device)
    terms = {"pairwise": F.cross_entropy(own, zeros)}
    if in_batch_negatives:
        own_negatives = torch.zeros(n, n, nway, dtype=torch.bool, device=scores.device)
        own_negatives[rows, rows, 1:] = True
        masked = scores.masked_fill(own_negatives.view(n, n * nway), float("-inf"))
        terms["in_batch"] = F.cross_entropy(masked, rows * nway)
    return terms
