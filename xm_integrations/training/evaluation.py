"""Per-language evaluation during training, with sentence-transformers' own evaluators.

Zero-shot transfer is the point of the X-MOD recipe: train on English, watch the languages you did
not train on. :func:`language_evaluators` turns the package's evaluation datasets (one folder per
language, as ``xm-integrations evaluate`` reads them) into one stock evaluator per language,
wrapped in a ``SequentialEvaluator``; pass it as the trainer's ``evaluator=``. Every query and
passage carries its dataset's adapter (a routed text is still a ``str``), so the stock evaluator's
own ``encode_query`` / ``encode_document`` / ``predict`` calls run each language through its adapter.
Metrics are logged per dataset, ``{name}_{metric}`` (``fr_ndcg@10``, ``de_mrr@10``...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError
from xm_integrations.evaluation.datasets import RetrievalDataset, load_datasets
from xm_integrations.languages.resolution import resolve_language
from xm_integrations.languages.routing import RoutedText

__all__ = ["MAX_RERANK_DOCUMENTS", "language_evaluators"]

#: Without candidates, a reranking evaluator scores every corpus passage per query; beyond this size, ask for candidates.
MAX_RERANK_DOCUMENTS = 1000


def language_evaluators(
    model: Any,
    datasets: str | Path | Sequence[RetrievalDataset],
    *,
    split: str = "test",
    language: str | None = None,
    candidates: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    **evaluator_kwargs: Any,
) -> Any:
    """One stock evaluator per evaluation dataset (language), as one ``SequentialEvaluator``.

    Args:
        model: The ``ColBERTXM`` (gets ``MultiVectorInformationRetrievalEvaluator``: full ranking
            of the dataset's corpus) or ``MonoXM`` (gets ``CrossEncoderRerankingEvaluator``)
            being trained.
        datasets: A dataset folder or a folder of per-language folders (see
            :func:`~xm_integrations.evaluation.datasets.load_datasets`), or datasets already loaded.
        split: The qrels split to read from a folder.
        language: The language of datasets that do not name one (a single-language folder); by
            default the model's default language.
        candidates: For Mono-XM: ``{dataset_name: {query_id: [doc_id, ...]}}``, the ranked
            candidates to rerank (e.g. a BM25 run via
            :func:`~xm_integrations.evaluation.datasets.load_candidates`). Without them each query
            reranks its positives among the whole corpus (at most :data:`MAX_RERANK_DOCUMENTS`
            passages).
        **evaluator_kwargs: Passed to every stock evaluator (``batch_size``, ``show_progress_bar``,
            ``at_k`` / ``ndcg_at_k``...).

    Raises:
        DatasetFormatError: a folder is not an evaluation dataset.
        UnknownLanguageError: a dataset's language has no adapter in the model.
        InvalidArgumentError: reranking without candidates over a corpus that is too large.
    """
    from sentence_transformers import CrossEncoder, MultiVectorEncoder
    from sentence_transformers.base.evaluation import SequentialEvaluator

    if not isinstance(model, (MultiVectorEncoder, CrossEncoder)):
        raise ArgumentTypeError(
            f"language_evaluators() takes a ColBERTXM (MultiVectorEncoder) or a MonoXM (CrossEncoder), got {type(model).__name__}."
        )
    loaded = load_datasets(datasets, split=split) if isinstance(datasets, (str, Path)) else list(datasets)
    evaluators = [_evaluator_for(model, dataset, language, (candidates or {}).get(dataset.name), evaluator_kwargs)
                  for dataset in loaded]
    return SequentialEvaluator(evaluators)


def _evaluator_for(model: Any, dataset: RetrievalDataset, language: str | None,
                   candidates: Mapping[str, Sequence[str]] | None, options: dict[str, Any]) -> Any:
    from sentence_transformers import MultiVectorEncoder

    lang_id = _adapter_index(model, dataset.language or language)
    queries = {query_id: RoutedText(text, lang_id) for query_id, text in dataset.queries.items()}
    corpus = {doc_id: RoutedText(text, lang_id) for doc_id, text in dataset.corpus.items()}
    relevant = {query_id: {doc for doc, grade in judged.items() if grade > 0} for query_id, judged in dataset.qrels.items()}
    relevant = {query_id: docs for query_id, docs in relevant.items() if docs and query_id in queries}
    if isinstance(model, MultiVectorEncoder):
        from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorInformationRetrievalEvaluator

        return MultiVectorInformationRetrievalEvaluator(
            {query_id: queries[query_id] for query_id in relevant}, corpus, relevant, name=dataset.name, **options
        )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples = _rerank_samples(dataset, queries, corpus, relevant, candidates)
    return CrossEncoderRerankingEvaluator(samples, name=dataset.name, **options)


def _adapter_index(model: Any, language: str | None) -> int:
    code = resolve_language(language, model.languages) if language is not None else model.default_language
    if code is None:
        raise InvalidArgumentError(
            "A dataset names no language and the model has no default_language: pass language='en' (any code)."
        )
    return list(model.languages).index(code)


def _rerank_samples(dataset: RetrievalDataset, queries: Mapping[str, RoutedText], corpus: Mapping[str, RoutedText],
                    relevant: Mapping[str, set[str]], candidates: Mapping[str, Sequence[str]] | None) -> list[dict[str, Any]]:
    """Stock reranking samples: ranked ``documents`` from the candidates, else every other passage as a negative."""
    if candidates is None and len(corpus) > MAX_RERANK_DOCUMENTS:
        raise InvalidArgumentError(
            f"{dataset.name}: reranking every one of {len(corpus)} passages per query is too slow for evaluation during "
            "training; pass candidates={name: load_candidates(run_file)} (e.g. BM25's top 100)."
        )
    samples = []
    for query_id, positives in relevant.items():
        positive = [corpus[doc] for doc in positives if doc in corpus]
        if not positive:
            continue
        if candidates is not None:
            ranked = [corpus[doc] for doc in candidates.get(query_id, ()) if doc in corpus]
            samples.append({"query": queries[query_id], "positive": positive, "documents": ranked})
        else:
            negative = [text for doc, text in corpus.items() if doc not in positives]
            samples.append({"query": queries[query_id], "positive": positive, "negative": negative})
    return samples
