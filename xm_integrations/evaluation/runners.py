"""Retrieval evaluation: MRR@10, nDCG@10, Recall@100 and Recall@1000, per language and averaged.

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

Datasets are read from a local folder in BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``) or in the layout of ``ir_datasets export`` (``docs.jsonl``/``docs.tsv``,
``queries.jsonl``/``queries.tsv``, ``qrels`` in TREC format). A folder whose sub-folders are such
datasets is read as one dataset per language, named by the sub-folder (``fr``, ``de-DE``,
``zh_CN``...).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xm_integrations.engine import UnsetBatchSize
from xm_integrations.errors import DatasetFormatError, InvalidArgumentError

__all__ = [
    "METRICS",
    "DatasetFormatError",
    "EvaluationResult",
    "RetrievalDataset",
    "evaluate_model",
    "evaluate_run",
    "load_candidates",
    "load_datasets",
    "rank_documents",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rerank",
    "retrieve",
    "results_document",
    "write_trec_run",
]

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

#: The metrics computed, in the order they are reported. Keys are ``name@cutoff``.
METRICS: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@100", "recall@1000")

#: The format tag written in results files, so that ``push_to_hub --eval-results`` can refuse others.
RESULTS_FORMAT = "xm-integrations-eval/1"

# Raw tab-separated files can hold passages longer than csv's default field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


@dataclass
class RetrievalDataset:
    """One retrieval test collection (in one language).

    Attributes:
        name: The folder name, or the language sub-folder's name.
        path: Where it was read from.
        corpus: ``{doc_id: text}``; a BEIR title is prepended to the text.
        queries: ``{query_id: text}``, restricted to the judged queries.
        qrels: ``{query_id: {doc_id: grade}}``.
        language: The language the folder is named after (``None`` for a single-language dataset).
    """

    name: str
    path: Path
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels
    language: str | None = None
    layout: str = field(default="beir")


def _read_jsonl(path: Path, id_keys: Sequence[str], desc: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(tqdm(handle, desc=desc, unit=" lines", leave=False), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{path}:{line_number}: not JSON ({error.msg}); expected one object per line.") from None
            key = next((k for k in id_keys if k in row), None)
            if key is None or "text" not in row:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected fields {' or '.join(repr(k) for k in id_keys)} and 'text', "
                    f"got {sorted(row)}."
                )
            title = (row.get("title") or "").strip()
            texts[str(row[key])] = f"{title} {row['text']}".strip() if title else row["text"]
    return texts


def _read_tsv_texts(path: Path, desc: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, row in enumerate(tqdm(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE),
                                               desc=desc, unit=" lines", leave=False), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise DatasetFormatError(f"{path}:{line_number}: expected 'id<TAB>text', got {row!r}.")
            if line_number == 1 and row[0] in ("doc_id", "query_id", "id", "_id"):
                continue
            texts[row[0]] = " ".join(part for part in row[1:] if part) if len(row) > 2 else row[1]
    return texts


def _read_qrels(path: Path) -> Qrels:
    """BEIR ``query-id<TAB>corpus-id<TAB>score`` (header optional) or TREC ``qid iter docid rel``."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                query_id, doc_id, grade = parts
            elif len(parts) == 4:
                query_id, _, doc_id, grade = parts
            else:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected 'query-id corpus-id score' (BEIR) or 'query-id 0 doc-id "
                    f"relevance' (TREC), got {len(parts)} fields."
                )
            try:
                value = int(float(grade))
            except ValueError:
                if line_number == 1:  # BEIR header: query-id corpus-id score
                    continue
                raise DatasetFormatError(f"{path}:{line_number}: relevance {grade!r} is not a number.") from None
            qrels.setdefault(query_id, {})[doc_id] = value
    return qrels


def _first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _is_dataset_folder(folder: Path) -> bool:
    return _first_existing(folder, ("corpus.jsonl", "docs.jsonl", "docs.tsv", "corpus.tsv")) is not None


def _load_one(folder: Path, split: str, name: str, language: str | None) -> RetrievalDataset:
    if (folder / "corpus.jsonl").is_file():
        layout = "beir"
        corpus = _read_jsonl(folder / "corpus.jsonl", ("_id", "doc_id", "id"), f"{name}: corpus")
    else:
        layout = "ir_datasets"
        docs = _first_existing(folder, ("docs.jsonl", "docs.tsv", "corpus.tsv"))
        if docs is None:
            raise DatasetFormatError(_layout_help(folder))
        corpus = (_read_jsonl(docs, ("doc_id", "_id", "id"), f"{name}: corpus") if docs.suffix == ".jsonl"
                  else _read_tsv_texts(docs, f"{name}: corpus"))
    queries_file = _first_existing(folder, ("queries.jsonl", "queries.tsv"))
    qrels_file = _first_existing(
        folder, (f"qrels/{split}.tsv", f"qrels/{split}.trec", f"qrels.{split}", f"qrels.{split}.tsv", "qrels",
                 "qrels.trec", "qrels.txt", "qrels.tsv")
    )
    if queries_file is None or qrels_file is None:
        raise DatasetFormatError(_layout_help(folder, split))
    queries = (_read_jsonl(queries_file, ("_id", "query_id", "id"), f"{name}: queries")
               if queries_file.suffix == ".jsonl" else _read_tsv_texts(queries_file, f"{name}: queries"))
    qrels = _read_qrels(qrels_file)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise DatasetFormatError(
            f"{qrels_file}: {len(unknown)} judged queries are not in {queries_file.name} (e.g. {unknown[:3]}); "
            "the qrels and queries files do not belong together."
        )
    return RetrievalDataset(name=name, path=folder, corpus=corpus,
                            queries={qid: queries[qid] for qid in qrels}, qrels=qrels, language=language,
                            layout=layout)


def _layout_help(folder: Path, split: str = "test") -> str:
    return (
        f"{folder} is not a dataset this tool reads. Expected either the BEIR layout (corpus.jsonl, "
        f"queries.jsonl, qrels/{split}.tsv) or the ir_datasets export layout (docs.jsonl or docs.tsv, queries.jsonl "
        "or queries.tsv, qrels in TREC format), or a folder of such datasets, one per language."
    )


def load_datasets(path: str | Path, split: str = "test") -> list[RetrievalDataset]:
    """Read a dataset folder, or a folder of per-language dataset folders (named by language).

    Args:
        path: The folder.
        split: Which ``qrels/<split>.tsv`` to read in the BEIR layout.

    Returns:
        One dataset per language sub-folder (sorted by name), or one dataset with ``language=None``.

    Raises:
        DatasetFormatError: the folder is in neither layout, or its files do not match.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"{path} is not a folder; pass the dataset's folder.")
    if _is_dataset_folder(path):
        return [_load_one(path, split, path.name, None)]
    subfolders = sorted(child for child in path.iterdir() if child.is_dir() and _is_dataset_folder(child))
    if not subfolders:
        raise DatasetFormatError(_layout_help(path, split))
    return [_load_one(child, split, child.name, child.name) for child in subfolders]


def load_candidates(path: str | Path) -> dict[str, list[str]]:
    """Candidate documents per query for reranking: a TREC run (``qid Q0 docid rank score tag``) or ``qid docid`` lines.

    A TREC run keeps its order by rank; a two-column file keeps the file's order. Duplicates are dropped.
    """
    path = Path(path)
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 6:
                query_id, _, doc_id, rank = parts[:4]
                try:
                    order = float(rank)
                except ValueError:
                    raise DatasetFormatError(f"{path}:{line_number}: rank {rank!r} is not a number.") from None
            elif len(parts) == 2:
                (query_id, doc_id), order = parts, float(line_number)
            else:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected a TREC run line 'qid Q0 docid rank score tag' or 'qid docid', "
                    f"got {len(parts)} fields."
                )
            rows.setdefault(query_id, []).append((order, line_number, doc_id))
    return {query_id: list(dict.fromkeys(doc for _, _, doc in sorted(entries))) for query_id, entries in rows.items()}


# ----------------------------------------------------------------------------------------------
# Running models
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------------


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
