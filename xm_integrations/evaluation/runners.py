"""Running models on evaluation datasets: ColBERT-XM retrieves from the corpus, Mono-XM reranks candidates.

:func:`evaluate_model` loads a model folder or repo id, picks the task from its layout, and returns
the results document of :mod:`.results`. The metric conventions are :mod:`.metrics`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xm_integrations.engine import UnsetBatchSize
from xm_integrations.errors import DatasetFormatError, InvalidArgumentError
from xm_integrations.evaluation.datasets import RetrievalDataset, load_candidates, load_datasets
from xm_integrations.evaluation.metrics import EvaluationResult, Run, evaluate_run
from xm_integrations.evaluation.results import results_document

__all__ = ["evaluate_model", "rerank", "retrieve"]


def rerank(model: Any, dataset: RetrievalDataset, candidates: Mapping[str, Sequence[str]], *,
           language: str | None = None, batch_size: int = UnsetBatchSize(32), show_progress_bar: bool = True) -> Run:
    """Score each query's candidates with a cross-encoder (``MonoXM``) and return the run.

    Args:
        model: Anything with ``predict(pairs, language=..., batch_size=..., show_progress_bar=...)``.
        dataset: The collection; candidates outside its corpus raise.
        candidates: ``{query_id: [doc_id, ...]}``, e.g. from :func:`load_candidates`.
        language: The language of every pair (``None``: the dataset's language, else the model's
            default; ``"auto"``: detected per pair).

    Raises:
        DatasetFormatError: a candidate document is not in the corpus.
    """
    pairs: list[tuple[str, str]] = []
    keys: list[tuple[str, str]] = []
    for query_id in dataset.queries:
        for doc_id in candidates.get(query_id, ()):
            if doc_id not in dataset.corpus:
                raise DatasetFormatError(
                    f"Candidate {doc_id!r} of query {query_id!r} is not in the corpus of {dataset.name}; "
                    "the candidates file belongs to another collection."
                )
            pairs.append((dataset.queries[query_id], dataset.corpus[doc_id]))
            keys.append((query_id, doc_id))
    run: Run = {}
    if not pairs:
        return run
    scores = model.predict(pairs, language=language or dataset.language, batch_size=batch_size,
                           show_progress_bar=show_progress_bar)
    for (query_id, doc_id), score in zip(keys, scores):
        run.setdefault(query_id, {})[doc_id] = float(score)
    return run


def retrieve(model: Any, dataset: RetrievalDataset, *, top_k: int = 1000, language: str | None = None,
             batch_size: int = UnsetBatchSize(32), show_progress_bar: bool = True, chunk_size: int = 4096) -> Run:
    """Full ranking of the corpus for every query with a multi-vector encoder (``ColBERTXM``), keeping ``top_k``.

    Documents are encoded once, then scored with MaxSim in chunks of ``chunk_size`` documents so that
    memory stays bounded by one chunk's score matrix.

    Args:
        model: Anything with ``encode_query``/``encode_document`` (taking ``language=``) returning one
            ``(tokens, dim)`` tensor per text.
        language: As in :func:`rerank`.
    """
    import torch

    from xm_integrations.scoring.late_interaction import maxsim

    language = language or dataset.language
    doc_ids = list(dataset.corpus)
    query_ids = list(dataset.queries)
    documents = model.encode_document([dataset.corpus[d] for d in doc_ids], language=language,
                                      batch_size=batch_size, show_progress_bar=show_progress_bar)
    queries = model.encode_query([dataset.queries[q] for q in query_ids], language=language,
                                 batch_size=batch_size, show_progress_bar=show_progress_bar)
    k = min(top_k, len(doc_ids))
    best_scores = torch.full((len(query_ids), 0), float("-inf"))
    best_ids = torch.zeros((len(query_ids), 0), dtype=torch.long)
    starts = range(0, len(doc_ids), chunk_size)
    for start in tqdm(starts, desc=f"{dataset.name}: MaxSim", disable=not show_progress_bar or len(starts) < 2):
        chunk = documents[start:start + chunk_size]
        scores = torch.as_tensor(maxsim(queries, chunk)).float().cpu()
        ids = torch.arange(start, start + len(chunk)).expand(len(query_ids), -1)
        merged_scores = torch.cat([best_scores, scores], dim=1)
        merged_ids = torch.cat([best_ids, ids], dim=1)
        keep = min(k, merged_scores.shape[1])
        best_scores, order = merged_scores.topk(keep, dim=1)
        best_ids = merged_ids.gather(1, order)
    return {
        query_id: {doc_ids[int(i)]: float(s) for s, i in zip(best_scores[row], best_ids[row])}
        for row, query_id in enumerate(query_ids)
    }


def _candidates_for(dataset: RetrievalDataset, candidates: str | Path, single: bool) -> dict[str, list[str]]:
    """A per-language folder's own candidates file (by name), or the given file for a single dataset."""
    inside = dataset.path / candidates
    if inside.is_file():
        return load_candidates(inside)
    if single and Path(candidates).is_file():
        return load_candidates(candidates)
    where = f"{inside}" if not single else f"{candidates} (or {inside})"
    raise DatasetFormatError(f"No candidates file {where}; rerank needs one per dataset, e.g. a BM25 run in TREC format.")


def evaluate_model(
    model_name_or_path: str | Path,
    dataset_path: str | Path,
    *,
    task: str | None = None,
    candidates: str | Path | None = None,
    language: str | None = None,
    split: str = "test",
    batch_size: int = UnsetBatchSize(32),
    top_k: int = 1000,
    dataset_name: str | None = None,
    dataset_id: str | None = None,
    show_progress_bar: bool = True,
    runs: dict[str, Run] | None = None,
) -> dict[str, Any]:
    """Evaluate a ColBERT-XM (full ranking) or Mono-XM (reranking) model on a local dataset; returns the results document.

    Args:
        model_name_or_path: A model folder or Hub repo id.
        dataset_path: A dataset folder, or a folder of per-language dataset folders.
        task: ``"retrieval"`` or ``"reranking"``; by default from the model (ColBERT-XM retrieves,
            Mono-XM reranks).
        candidates: For reranking: a candidates file (TREC run or ``qid docid`` lines); with
            per-language folders, the name of the file inside each of them.
        language: Overrides the language of every dataset (``"auto"`` detects per input); by default
            each language folder's name, else the model's default language.
        runs: If given, filled with each dataset's run (``{name: run}``), e.g. to save them.

    Raises:
        DatasetFormatError, ModelFolderError, UnknownLanguageError, ValueError: with what to fix.
    """
    from xm_integrations.hub.convert import resolve_source
    from xm_integrations.hub.model_folder import ModelKind, read_model_folder

    folder = read_model_folder(resolve_source(model_name_or_path))
    retriever = folder.kind in (ModelKind.COLBERT_AI, ModelKind.COLBERT_XM)
    task = task or ("retrieval" if retriever else "reranking")
    if task == "retrieval" and not retriever:
        raise InvalidArgumentError(f"{model_name_or_path} is a {folder.kind.value} model; full-ranking retrieval needs ColBERT-XM. "
                         "Use --task reranking with --candidates.")
    if task == "reranking" and retriever:
        raise InvalidArgumentError(f"{model_name_or_path} is a ColBERT-XM retriever; evaluate it with --task retrieval.")
    if task == "reranking" and folder.kind is not ModelKind.MONO_XM:
        raise InvalidArgumentError(f"{model_name_or_path} is not a cross-encoder (one output); reranking needs Mono-XM.")
    if task == "reranking" and candidates is None:
        raise InvalidArgumentError("Reranking needs --candidates: the documents to rerank per query (a TREC run, e.g. BM25's).")
    datasets = load_datasets(dataset_path, split=split)
    if task == "retrieval":
        from xm_integrations.models.colbert_xm.model import ColBERTXM

        model: Any = ColBERTXM(str(folder.path))
    else:
        from xm_integrations.models.mono_xm import MonoXM

        model = MonoXM(str(folder.path))
    results: dict[str, EvaluationResult] = {}
    for dataset in tqdm(datasets, desc="datasets", unit="dataset", disable=not show_progress_bar or len(datasets) < 2):
        if task == "retrieval":
            run = retrieve(model, dataset, top_k=top_k, language=language, batch_size=batch_size,
                           show_progress_bar=show_progress_bar)
        else:
            run = rerank(model, dataset, _candidates_for(dataset, candidates, len(datasets) == 1),  # type: ignore[arg-type]
                         language=language, batch_size=batch_size, show_progress_bar=show_progress_bar)
        if runs is not None:
            runs[dataset.name] = run
        results[dataset.language or dataset.name] = evaluate_run(run, dataset.qrels)
    return results_document(results, model=str(model_name_or_path), task=task,
                            dataset_name=dataset_name or Path(dataset_path).name, dataset_id=dataset_id, split=split)
