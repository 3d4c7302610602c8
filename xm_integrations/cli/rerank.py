"""``xm-integrations rerank``: rank passages for one query with Mono-XM.

Input: the query (``--query`` or ``--query-file``) and the passages, from a file or stdin, either one
passage per line or JSON lines (``{"text": ..., "id": ..., "language": ...}``, only ``text``
required). Output: one JSON object per passage, best first, or a table. Every passage goes through
the adapter of its language: its own ``"language"`` field, else ``--language`` (one language, or
``auto`` to detect it from the passage), else the checkpoint's default language.

Passage reading, the options shared with ``search``, output and errors live in
:mod:`xm_integrations.cli._common`. Heavy imports (torch, sentence-transformers) happen only when
the command runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from xm_integrations.cli._common import (
    InputError,
    Passage,
    add_command,
    add_input_options,
    add_run_options,
    load_run_inputs,
    missing_language_message,
    output_format,
    positive_int,
    read_passages,
    read_text_file,
    write_jsonl,
    write_table,
)

# Passage and read_passages were defined here first and stay importable from here.
__all__ = ["DEFAULT_MODEL", "Passage", "add_parser", "read_passages", "run"]

#: The published Mono-XM checkpoint, loaded through the normal Hugging Face Hub path.
DEFAULT_MODEL = "antoinelouis/mono-xm"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rerank`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "rerank",
        help="rank passages for a query with Mono-XM",
        description=(
            "Rank passages for one query with Mono-XM (or any XMOD cross-encoder). Passages come from a file or "
            "stdin, one per line or as JSON lines {\"text\": ..., \"id\": ..., \"language\": ...} (only text "
            "required). Each passage goes through the adapter of its own \"language\", else of --language "
            "('auto' detects it from the passage), else of the checkpoint's default language. Scores are the "
            "model's sigmoid probabilities, best first."
        ),
        examples=(
            "xm-integrations rerank --query 'When was the Eiffel Tower built?' passages.txt --language auto",
            "cat passages.jsonl | xm-integrations rerank --query-file query.txt --language fr --format table",
            "python -m xm_integrations.testing build /tmp/xm-tiny    # offline tiny checkpoint, random weights",
            "xm-integrations rerank --model /tmp/xm-tiny/mono-xm --query-file xm_integrations/data/demo_query.txt \\",
            "    xm_integrations/data/demo_passages.jsonl --language auto --format table",
        ),
        run=run,
    )
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("-q", "--query", help="the query text")
    query.add_argument("--query-file", type=Path, help="a file holding the query (one line)")
    add_input_options(parser, passages="passages", default_model=DEFAULT_MODEL, model_kind="an XMOD cross-encoder")
    parser.add_argument("-k", "--top-k", type=positive_int, help="print only the best K passages")
    add_run_options(parser, batch_unit="pairs",
                    progress_help="no progress bar (shown on stderr when there is more than one batch)")
    return parser


def read_query(args: argparse.Namespace) -> str:
    """The query from ``--query`` or ``--query-file``."""
    if args.query is not None:
        query = args.query
    else:
        query = read_text_file(args.query_file, "--query-file").strip()
        if "\n" in query:
            raise InputError(f"{args.query_file} holds several lines; rerank takes one query (one line).")
    if not query.strip():
        raise InputError("the query is empty.")
    return query


def run(args: argparse.Namespace) -> int:
    """Run ``rerank``; returns the exit code (errors are raised, :func:`xm_integrations.cli.main` reports them)."""
    query = read_query(args)
    passages = load_run_inputs(args, args.passages, "the passages")

    from xm_integrations.engine import FastInferenceConfig
    from xm_integrations.errors import MissingLanguageError
    from xm_integrations.models.mono_xm import MonoXM
    from xm_integrations.models.reranking import pair_languages

    model = MonoXM(args.model, device=args.device, fast_inference=FastInferenceConfig(max_batch_tokens=args.max_batch_tokens))
    requested = [passage.language or args.language for passage in passages]
    try:
        codes = pair_languages(model, [(query, passage.text) for passage in passages], requested)
    except MissingLanguageError:
        raise MissingLanguageError(missing_language_message(args.model, "each passage")) from None

    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    show_progress = not args.no_progress and len(passages) > (args.batch_size or 32)
    results = model.rank(query, [passage.text for passage in passages], language=codes, top_k=args.top_k,
                         show_progress_bar=show_progress, **batch)
    rows = [
        {
            "rank": rank,
            "score": float(result["score"]),
            "index": result["corpus_id"],
            **({"id": passages[result["corpus_id"]].id} if passages[result["corpus_id"]].id is not None else {}),
            "language": codes[result["corpus_id"]],
            "text": passages[result["corpus_id"]].text,
        }
        for rank, result in enumerate(results, start=1)
    ]
    (_write_table if output_format(args.format) == "table" else write_jsonl)(rows, sys.stdout)
    return 0


def _write_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Rank, score, adapter, id (or input index) and the passage, cut to the terminal's width."""
    cells = [(str(row["rank"]), f"{row['score']:.4f}", row["language"], str(row.get("id", row["index"])), row["text"])
             for row in rows]
    write_table(("rank", "score", "language", "id", "passage"), cells, out, numeric=2)
