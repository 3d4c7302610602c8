"""Retrieval evaluation: metrics, dataset loaders, runners for ColBERT-XM and Mono-XM, results files.

Owns :mod:`.metrics` (MRR, nDCG, recall, trec_eval conventions), :mod:`.datasets` (BEIR and
ir_datasets export layouts, per-language folders), :mod:`.runners` (retrieve with ColBERT-XM, rerank
with Mono-XM, :func:`evaluate_model`) and :mod:`.results` (the results document the model cards
read, TREC runs). The model classes are imported only when a runner loads one; the hub package
imports :mod:`.results` only.
"""

from xm_integrations.errors import DatasetFormatError
from xm_integrations.evaluation.datasets import RetrievalDataset, load_candidates, load_datasets
from xm_integrations.evaluation.metrics import (
    METRICS,
    EvaluationResult,
    evaluate_run,
    ndcg_at_k,
    rank_documents,
    recall_at_k,
    reciprocal_rank_at_k,
)
from xm_integrations.evaluation.results import RESULTS_FORMAT, iter_eval_entries, results_document, write_trec_run
from xm_integrations.evaluation.runners import evaluate_model, rerank, retrieve

__all__ = [
    "METRICS",
    "RESULTS_FORMAT",
    "DatasetFormatError",
    "EvaluationResult",
    "RetrievalDataset",
    "evaluate_model",
    "evaluate_run",
    "iter_eval_entries",
    "load_candidates",
    "load_datasets",
    "ndcg_at_k",
    "rank_documents",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rerank",
    "results_document",
    "retrieve",
    "write_trec_run",
]
