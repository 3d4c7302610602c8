"""``xm-integrations search``: search a corpus file or an index with ColBERT-XM, optionally reranked by Mono-XM.

The corpus (a file, or stdin) is read as ``rerank`` reads passages: one per line, or JSON lines
``{"text": ..., "id": ..., "language": ...}`` (only ``text`` required). Every passage is encoded
once with ColBERT-XM through the adapter of its language (its own ``"language"``, else
``--language``, where ``auto`` detects it, else the checkpoint's default), then every query is
scored against every passage by exhaustive MaxSim: no index, so it suits corpora that fit in
memory (thousands to a few hundred thousand passages). With ``--rerank`` the best ``--candidates``
of each query are rescored by Mono-XM, each pair through the adapter of its passage.

With ``--index DIR`` (built by ``xm-integrations index``) nothing is re-encoded: the queries are
searched in the index (approximate candidates re-scored by exact MaxSim, or every passage with
``--exact``), ``--where`` filters on ``id``, ``language`` and the metadata fields, and the model
defaults to the one the index was built with.

Passage reading, the options shared with ``rerank``, output and errors live in
:mod:`xm_integrations.cli._common`. Heavy imports (torch, sentence-transformers) happen only when the
command runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from xm_integrations.cli._common import (
    InputError,
    Passage,
    add_command,
    add_input_options,
    add_run_options,
    check_device,
    load_run_inputs,
    missing_language_message,
    output_format,
    positive_int,
    quiet_progress,
    read_text_file,
    terminal_safe,
    write_jsonl,
    write_table,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_RERANKER", "Query", "add_parser", "read_queries", "run", "search", "search_index"]

#: The published checkpoints, loaded through the normal Hugging Face Hub path.
DEFAULT_MODEL = "antoinelouis/colbert-xm"
DEFAULT_RERANKER = "antoinelouis/mono-xm"


@dataclass(frozen=True)
class Query:
    """One query, with the adapter it was encoded with."""

    text: str
    language: str


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``search`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "search",
        help="search a corpus file (exhaustive MaxSim) or an index with ColBERT-XM, optionally reranked by Mono-XM",
        description=(
            "Encode a corpus with ColBERT-XM, score every query against every passage by MaxSim, print the best. "
            "Passages come from a file or stdin, one per line or as JSON lines {\"text\": ..., \"id\": ..., "
            "\"language\": ...} (only text required). Each passage goes through the adapter of its own "
            "\"language\", else of --language ('auto' detects it), else of the checkpoint's default language; "
            "queries through --query-language, which defaults to --language. --rerank rescores the best "
            "--candidates passages of each query with Mono-XM. With --index DIR the index built by "
            "'xm-integrations index' is searched instead of a corpus (--where filters it)."
        ),
        examples=(
            "xm-integrations search corpus.jsonl -q 'When was the Eiffel Tower built?' -q 'Was ist Photosynthese?' \\",
            "    --language auto --top-k 3",
            "xm-integrations search corpus.txt --query-file queries.txt --language fr --rerank --format table",
            "python -m xm_integrations.testing build /tmp/xm-tiny    # offline tiny checkpoints, random weights",
            "xm-integrations search xm_integrations/data/demo_passages.jsonl --model /tmp/xm-tiny/colbert-xm \\",
            "    -q 'When was the Eiffel Tower built?' -q 'Combien de caféine dans le thé vert ?' \\",
            "    -q 'Was ist Photosynthese?' --language auto --top-k 3 --format table",
            "xm-integrations search --index /tmp/xm-index -q 'Was ist Photosynthese?' --language de \\",
            "    --where \"language = 'fr_XX'\" --format table",
        ),
        run=run,
    )
    queries = parser.add_mutually_exclusive_group(required=True)
    queries.add_argument("-q", "--query", action="append", help="a query (repeat for several)")
    queries.add_argument("--query-file", type=Path, help="a file of queries, one per line (blank lines skipped)")
    add_input_options(parser, passages="corpus", default_model=DEFAULT_MODEL, model_kind="a ColBERT-XM checkpoint",
                      model_note="; with --index, the model the index was built with")
    parser.set_defaults(model=None)  # resolved in run(): the index's recorded model, else DEFAULT_MODEL
    parser.add_argument("--index", metavar="DIR", help="search this index (from 'xm-integrations index') instead of a corpus")
    parser.add_argument("--where", metavar="EXPR",
                        help="with --index: an SQL filter over id, language (adapter codes such as 'fr_XX') and the "
                             "metadata fields, e.g. \"language = 'fr_XX' AND year >= 2020\"")
    parser.add_argument("--exact", action="store_true",
                        help="with --index: score every passage (exhaustive) instead of the approximate candidates")
    parser.add_argument("--query-language",
                        help="language of the queries, or 'auto' to detect each (default: --language)")
    parser.add_argument("-k", "--top-k", type=positive_int, default=10,
                        help="results per query (default: 10)")
    parser.add_argument("--rerank", action="store_true", help="rescore the candidates with Mono-XM")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER,
                        help=f"Hub repo id or local folder of the Mono-XM checkpoint (default: {DEFAULT_RERANKER})")
    parser.add_argument("--candidates", type=positive_int, default=100,
                        help="with --rerank, how many MaxSim results per query Mono-XM rescores (default: 100)")
    add_run_options(parser, batch_unit="texts", rows_per_line="result",
                    progress_help="no progress bars (shown on stderr while the corpus is encoded)")
    return parser


def read_queries(args: argparse.Namespace) -> list[str]:
    """The queries from ``--query`` (repeated) or ``--query-file`` (one per line).

    Raises:
        InputError: an empty query, an unreadable file, or no query at all.
    """
    if args.query is not None:
        queries = list(args.query)
        for number, query in enumerate(queries, start=1):
            if not query.strip():
                raise InputError(f"query {number} (--query) is empty.")
        return queries
    lines = read_text_file(args.query_file, "--query-file").splitlines()
    queries = [line.strip() for line in lines if line.strip()]
    if not queries:
        raise InputError(f"{args.query_file} holds no query.")
    return queries


def search(
    model: Any,
    queries: list[str],
    passages: list[Passage],
    *,
    language: str | None = None,
    query_language: str | None = None,
    top_k: int = 10,
    reranker: Any = None,
    candidates: int = 100,
    batch_size: int | None = None,
    show_progress_bar: bool = False,
) -> list[tuple[Query, list[dict[str, Any]]]]:
    """Exhaustive MaxSim search of ``queries`` over ``passages``, with optional cross-encoder reranking.

    Args:
        model: A :class:`~xm_integrations.ColBERTXM`.
        queries: Query texts.
        passages: The corpus; a passage's own ``language`` wins over ``language``.
        language: Language of passages without their own (``"auto"`` detects), else the default.
        query_language: Language of the queries (``"auto"`` detects each); ``language`` when None.
        top_k: Results per query.
        reranker: A :class:`~xm_integrations.MonoXM` to rescore the best ``candidates``, or None.
        candidates: How many MaxSim results per query the reranker sees.
        batch_size: The most texts per forward pass (``None``: the fast path's token budget decides).
        show_progress_bar: As for ``encode``.

    Returns:
        For each query, the query with its adapter and its results, best first:
        ``{"index", "id"?, "language", "text", "score"}`` plus ``"rerank_score"`` when reranked
        (then ``"score"`` is still the MaxSim score and the order is by ``"rerank_score"``).
    """
    passage_codes = model._resolve_input_languages(
        [passage.language or language for passage in passages], len(passages),
        lambda positions: [passages[i].text for i in positions],
    )
    query_codes = model._resolve_input_languages(
        query_language if query_language is not None else language, len(queries),
        lambda positions: [queries[i] for i in positions],
    )
    texts = [passage.text for passage in passages]
    batch = {} if batch_size is None else {"batch_size": batch_size}
    passage_vectors = model.encode_document(texts, language=passage_codes, show_progress_bar=show_progress_bar, **batch)
    query_vectors = model.encode_query(queries, language=query_codes, **batch)
    scores = model.similarity(query_vectors, passage_vectors).float().cpu()
    keep = min(len(passages), max(top_k, candidates) if reranker is not None else top_k)

    results = []
    for row, (query, code) in enumerate(zip(queries, query_codes)):
        best = scores[row].sort(descending=True, stable=True).indices[:keep].tolist()
        hits = [
            {
                "index": index,
                **({"id": passages[index].id} if passages[index].id is not None else {}),
                "language": passage_codes[index],
                "text": texts[index],
                "score": float(scores[row, index]),
            }
            for index in best
        ]
        if reranker is not None and hits:
            rerank_scores = reranker.predict([(query, hit["text"]) for hit in hits],
                                             language=[hit["language"] for hit in hits], **batch)
            for hit, rerank_score in zip(hits, rerank_scores):
                hit["rerank_score"] = float(rerank_score)
            hits.sort(key=lambda hit: -hit["rerank_score"])  # stable: MaxSim order breaks ties
        results.append((Query(query, code), hits[:top_k]))
    return results


def run(args: argparse.Namespace) -> int:
    """Run ``search``; returns the exit code (errors are raised, :func:`xm_integrations.cli.main` reports them)."""
    queries = read_queries(args)
    if args.index is not None:
        if args.corpus != "-":
            raise InputError("give a corpus file or --index DIR, not both.")
        check_device(args.device)
        if args.no_progress:
            quiet_progress()
    else:
        if args.where is not None or args.exact:
            raise InputError("--where and --exact need --index DIR (a corpus file is always searched exhaustively).")
        passages = load_run_inputs(args, args.corpus, "the corpus")

    from xm_integrations.engine import FastInferenceConfig
    from xm_integrations.errors import MissingLanguageError
    from xm_integrations.models.colbert_xm.model import ColBERTXM

    config = FastInferenceConfig(max_batch_tokens=args.max_batch_tokens)
    index = _open_index(args.index) if args.index is not None else None
    model_name = args.model or (index.record.name_or_path if index is not None else None) or DEFAULT_MODEL
    model = ColBERTXM(model_name, device=args.device, fast_inference=config)
    reranker = None
    if args.rerank:
        from xm_integrations.models.mono_xm import MonoXM

        reranker = MonoXM(args.reranker, device=args.device, fast_inference=config)
    try:
        if index is not None:
            index = type(index)(args.index, model=model)  # checks the model against the index's record
            results = search_index(index, queries, language=args.query_language or args.language, top_k=args.top_k,
                                   where=args.where, exact=args.exact, reranker=reranker, candidates=args.candidates,
                                   batch_size=args.batch_size)
        else:
            results = search(
                model, queries, passages, language=args.language, query_language=args.query_language,
                top_k=args.top_k, reranker=reranker, candidates=args.candidates, batch_size=args.batch_size,
                show_progress_bar=not args.no_progress,
            )
    except MissingLanguageError:
        raise MissingLanguageError(missing_language_message(model_name, "each passage and query")) from None

    rows = [
        {"query": query.text, "query_index": query_index, "query_language": query.language, "rank": rank, **hit}
        for query_index, (query, hits) in enumerate(results)
        for rank, hit in enumerate(hits, start=1)
    ]
    if output_format(args.format) == "table":
        _write_table(results, sys.stdout)
    else:
        write_jsonl(rows, sys.stdout)
    return 0


def search_index(
    index: Any,
    queries: list[str],
    *,
    language: str | None = None,
    top_k: int = 10,
    where: str | None = None,
    exact: bool = False,
    reranker: Any = None,
    candidates: int = 100,
    batch_size: int | None = None,
) -> list[tuple[Query, list[dict[str, Any]]]]:
    """:func:`search`'s results from an index (:class:`~xm_integrations.index.MultiVectorIndex` with its model).

    Hits carry ``"id"``, ``"language"``, ``"text"``, ``"metadata"`` and ``"score"`` (MaxSim), plus
    ``"rerank_score"`` when reranked (then ordered by it), as :func:`search` gives them.
    """
    model = index.model
    codes = model._resolve_input_languages(language, len(queries), lambda positions: [queries[i] for i in positions])
    found = index.search(queries, language=codes, top_k=top_k, where=where, exact=exact, reranker=reranker,
                         rerank_candidates=candidates, return_text=True, return_metadata=True, batch_size=batch_size)
    return [
        (Query(query, code), [{"id": hit.pop("corpus_id"), "language": hit.pop("language"), "text": hit.pop("text"),
                               **hit} for hit in hits])
        for query, code, hits in zip(queries, codes, found)
    ]


def _open_index(path: str) -> Any:
    from xm_integrations.index import LanceDBIndex

    if not Path(path).is_dir():
        raise InputError(f"no index at {path}: build one with xm-integrations index CORPUS --index {path}.")
    index = LanceDBIndex(path)
    if index.record is None:
        raise InputError(f"{path} holds no index yet: build one with xm-integrations index CORPUS --index {path}.")
    return index


def _write_table(results: list[tuple[Query, list[dict[str, Any]]]], out: TextIO) -> None:
    """Per query: a heading, then rank, score(s), adapter, id (or corpus index) and the passage."""
    reranked = any("rerank_score" in hit for _, hits in results for hit in hits)
    header = ("rank", "maxsim", *(("rerank",) if reranked else ()), "language", "id", "passage")
    for number, (query, hits) in enumerate(results, start=1):
        if number > 1:
            out.write("\n")
        out.write(f"query {number} [{query.language}]: {terminal_safe(' '.join(query.text.split()))}\n")
        cells = [
            (str(rank), f"{hit['score']:.4f}", *((f"{hit['rerank_score']:.4f}",) if reranked else ()),
             hit["language"], str(hit["id"] if "id" in hit else hit["index"]), hit["text"])
            for rank, hit in enumerate(hits, start=1)
        ]
        write_table(header, cells, out, numeric=2 + reranked)
