"""The results document of ``xm-integrations evaluate`` (what model cards read) and TREC run files.

Imports nothing but the metrics' ranking rule, so the hub package can read results without
importing the models.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from xm_integrations.errors import InvalidArgumentError
from xm_integrations.evaluation.metrics import METRICS, EvaluationResult, rank_documents

__all__ = ["RESULTS_FORMAT", "iter_eval_entries", "results_document", "write_trec_run"]


#: The format tag written in results files, so that ``push_to_hub --eval-results`` can refuse others.
RESULTS_FORMAT = "xm-integrations-eval/1"


def results_document(
    results: Mapping[str, EvaluationResult], *, model: str, task: str, dataset_name: str,
    dataset_id: str | None = None, split: str = "test", metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """The JSON document ``evaluate`` writes and ``push_to_hub --eval-results`` reads.

    Args:
        results: ``{language_or_dataset_name: EvaluationResult}``.
        model: The model's path or repo id.
        task: ``"retrieval"`` (full ranking) or ``"reranking"``.
        dataset_name: A readable name (``"mMARCO"``).
        dataset_id: The dataset's Hub id (``"unicamp-dl/mmarco"``), used as the card's dataset type.

    The average is the macro-average over languages (each language weighs the same), the way
    multilingual benchmarks (mMARCO, MIRACL) report it.
    """
    per_language = {
        name: {**{metric: result.mean[metric] for metric in metrics}, "num_queries": result.num_queries,
               "num_queries_without_relevant": result.num_queries_without_relevant,
               "num_queries_missing_from_run": result.num_queries_missing_from_run}
        for name, result in results.items()
    }
    average = {metric: sum(result.mean[metric] for result in results.values()) / len(results) for metric in metrics}
    return {
        "format": RESULTS_FORMAT,
        "model": model,
        "task": task,
        "dataset": {"name": dataset_name, "id": dataset_id, "split": split},
        "metrics": list(metrics),
        "per_language": per_language,
        "average": {**average, "num_languages": len(results)},
    }


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "xm-integrations") -> None:
    """Write a run in TREC format (``qid Q0 docid rank score tag``), ranked as the metrics rank it."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for query_id, scores in run.items():
            for rank, doc_id in enumerate(rank_documents(scores), start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {float(scores[doc_id]):.6f} {tag}\n")


def iter_eval_entries(document: Mapping[str, Any]) -> Iterator[tuple[str | None, str, float]]:
    """``(language or None for the average, metric, value)`` for each number of a results document.

    Raises:
        ValueError: the document is not a results file written by :func:`results_document`.
    """
    if document.get("format") != RESULTS_FORMAT:
        raise InvalidArgumentError(
            f"Not an evaluation results file (format {document.get('format')!r}, expected {RESULTS_FORMAT!r}); "
            "write one with `xm-integrations evaluate ... --output FILE`."
        )
    metrics = document["metrics"]
    for language, values in document["per_language"].items():
        for metric in metrics:
            yield language, metric, float(values[metric])
    if len(document["per_language"]) > 1:
        for metric in metrics:
            yield None, metric, float(document["average"][metric])
