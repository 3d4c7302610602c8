"""Retrieval metrics: MRR@10, nDCG@10, Recall@100 and Recall@1000, per language and averaged.

The metric definitions follow ``trec_eval`` (what BEIR, ``pytrec_eval`` and ``ir-measures`` report),
so numbers are comparable with published ones:

* documents are ranked by score, highest first; **ties are broken by document id in reverse
  string order** (``trec_eval``'s rule), so a run with equal scores always evaluates the same way;
* a document is *relevant* when its judgement is ``>= 1``; a retrieved document without a
  judgement counts as non-relevant;
* nDCG uses the judgement itself as gain (linear gain, as ``trec_eval``'s ``ndcg_cut``), with the
  ideal ranking built from every judged document of the query;
* every query of the qrels is evaluated: a query missing from the run scores 0, and so does a query
  whose judgements are all non-relevant (``trec_eval -c``). Queries of the run without judgements
  are ignored.

The tests check every value against ``ir-measures``' ``pytrec_eval`` provider on made data with
ties, unjudged documents, graded judgements and missing queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from xm_integrations.errors import InvalidArgumentError

__all__ = ["METRICS", "EvaluationResult", "Qrels", "Run", "evaluate_run", "ndcg_at_k", "rank_documents", "recall_at_k",
           "reciprocal_rank_at_k"]


Qrels = dict[str, dict[str, int]]


Run = dict[str, dict[str, float]]


#: The metrics computed, in the order they are reported. Keys are ``name@cutoff``.
METRICS: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@100", "recall@1000")


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Document ids by decreasing score; equal scores by decreasing document id, as ``trec_eval`` ranks them."""
    return [doc_id for doc_id, _ in sorted(scores.items(), key=lambda item: (float(item[1]), item[0]), reverse=True)]


def reciprocal_rank_at_k(ranking: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document among the first ``k``, 0 when there is none."""
    for position, doc_id in enumerate(ranking[:k]):
        if judgements.get(doc_id, 0) >= 1:
            return 1.0 / (position + 1)
    return 0.0


def ndcg_at_k(ranking: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain over the first ``k`` documents (gain = judgement, log2 discount)."""
    dcg = sum(
        judgements.get(doc_id, 0) / math.log2(position + 2)
        for position, doc_id in enumerate(ranking[:k])
        if judgements.get(doc_id, 0) > 0
    )
    ideal_gains = sorted((grade for grade in judgements.values() if grade > 0), reverse=True)[:k]
    ideal = sum(grade / math.log2(position + 2) for position, grade in enumerate(ideal_gains))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found among the first ``k``; 0 when the query has no relevant document."""
    relevant = {doc_id for doc_id, grade in judgements.items() if grade >= 1}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


_METRIC_FUNCTIONS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "mrr": reciprocal_rank_at_k,
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
}


def _parse_metric(metric: str) -> tuple[Callable[[Sequence[str], Mapping[str, int], int], float], int]:
    name, _, cutoff = metric.partition("@")
    if name not in _METRIC_FUNCTIONS or not cutoff.isdigit() or int(cutoff) < 1:
        raise InvalidArgumentError(
            f"Unknown metric {metric!r}: write NAME@K with NAME one of {', '.join(_METRIC_FUNCTIONS)} and K >= 1 "
            "(e.g. 'ndcg@10')."
        )
    return _METRIC_FUNCTIONS[name], int(cutoff)


@dataclass
class EvaluationResult:
    """Per-query values and their means over every judged query.

    Attributes:
        per_query: ``{query_id: {metric: value}}`` for every query of the qrels.
        mean: ``{metric: value}``, the mean over ``per_query``.
        num_queries: Queries evaluated (those of the qrels).
        num_queries_without_relevant: Judged queries that have no relevant document (they score 0).
        num_queries_missing_from_run: Judged queries the run has no result for (they score 0).
    """

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    num_queries: int
    num_queries_without_relevant: int = 0
    num_queries_missing_from_run: int = 0


def evaluate_run(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                 metrics: Sequence[str] = METRICS) -> EvaluationResult:
    """Evaluate ``run`` (``{query_id: {doc_id: score}}``) against ``qrels`` (``{query_id: {doc_id: grade}}``).

    Raises:
        ValueError: ``qrels`` is empty (nothing to average), or an unknown metric.
    """
    if not qrels:
        raise InvalidArgumentError("The qrels hold no judged query: check that the qrels file matches the queries' ids.")
    parsed = {metric: _parse_metric(metric) for metric in metrics}
    per_query: dict[str, dict[str, float]] = {}
    without_relevant = missing = 0
    for query_id, judgements in qrels.items():
        scores = run.get(query_id)
        if not scores:
            missing += 1
        if not any(grade >= 1 for grade in judgements.values()):
            without_relevant += 1
        ranking = rank_documents(scores) if scores else []
        per_query[query_id] = {metric: function(ranking, judgements, k) for metric, (function, k) in parsed.items()}
    mean = {metric: sum(values[metric] for values in per_query.values()) / len(per_query) for metric in metrics}
    return EvaluationResult(per_query, mean, len(per_query), without_relevant, missing)
