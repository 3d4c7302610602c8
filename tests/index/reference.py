"""The independent reference for every index test: a NumPy MaxSim over every passage, and the corpus it scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from xm_integrations.testing import synthetic_passages

CORPUS = synthetic_passages(2000, seed=1)
QUERIES = [passage["text"][:60] for passage in synthetic_passages(24, seed=2)]


def reference_scores(query_vectors: list[np.ndarray], document_vectors: list[np.ndarray]) -> np.ndarray:
    """MaxSim of every query against every document, in NumPy float64 (documents already float16-rounded)."""
    scores = np.zeros((len(query_vectors), len(document_vectors)))
    for j, document in enumerate(document_vectors):
        for i, query in enumerate(query_vectors):
            scores[i, j] = (query.astype(np.float64) @ document.astype(np.float64).T).max(axis=1).sum()
    return scores


def top_ids(scores: np.ndarray, ids: list[str], k: int) -> list[list[str]]:
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def recall(results: list[list[dict]], expected: list[list[str]]) -> float:
    """Share of the expected ids that ``results`` (an index's search output) found."""
    found = sum(len({hit["corpus_id"] for hit in hits} & set(best)) for hits, best in zip(results, expected))
    return found / sum(len(best) for best in expected)


def opener(backend: str, folder: Path) -> Callable[..., Any]:
    """``open(model=None, **options)``: the index of ``backend`` stored under ``folder`` (Qdrant: local mode there)."""
    def open_index(model: Any = None, **options: Any) -> Any:
        if backend == "lancedb":
            from xm_integrations.index import LanceDBIndex

            return LanceDBIndex(folder, model=model, **options)
        from xm_integrations.index import QdrantIndex

        return QdrantIndex(path=str(folder), model=model, **options)
    return open_index
