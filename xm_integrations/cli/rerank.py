"""``xm-integrations rerank``: rank passages for one query with Mono-XM.

Input: the query (``--query`` or ``--query-file``) and the passages, from a file or stdin, either one
passage per line or JSON lines (``{"text": ..., "id": ..., "language": ...}``, only ``text``
required). Output: one JSON object per passage, best first, or a table. Every passage goes through
the adapter of its language: its own ``"language"`` field, else ``--language`` (one language, or
``auto`` to detect it from the passage), else the checkpoint's default language.

Heavy imports (torch, sentence-transformers) happen only when the command runs, so ``--help`` is
quick.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DEFAULT_MODEL", "Passage", "add_parser", "read_passages", "run"]

#: The published Mono-XM checkpoint, loaded through the normal Hugging Face Hub path.
DEFAULT_MODEL = "antoinelouis/mono-xm"

#: Exit code for bad input or arguments (argparse's own); a model that cannot be loaded gives 1.
_USAGE_ERROR = 2


class InputError(ValueError):
    """Bad command-line input; the message says where and what to do."""


@dataclass(frozen=True)
class Passage:
    """One passage to rank, with what the input said about it."""

    text: str
    id: Any = None
    language: str | None = None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rerank`` on the top-level parser."""
    parser = subparsers.add_parser(
        "rerank",
        help="rank passages for a query with Mono-XM",
        description=(
            "Rank passages for one query with Mono-XM (or any XMOD cross-encoder). Passages come from a file or "
            "stdin, one per line or as JSON lines {\"text\": ..., \"id\": ..., \"language\": ...} (only text "
            "required). Each passage goes through the adapter of its own \"language\", else of --language "
            "('auto' detects it from the passage), else of the checkpoint's default language. Scores are the "
            "model's sigmoid probabilities, best first."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  xm-integrations rerank --query 'When was the Eiffel Tower built?' passages.txt --language auto\n"
            "  cat passages.jsonl | xm-integrations rerank --query-file query.txt --language fr --format table\n"
            "  python -m xm_integrations.testing build /tmp/xm-tiny    # offline tiny checkpoint, random weights\n"
            "  xm-integrations rerank --model /tmp/xm-tiny/mono-xm --query-file xm_integrations/data/demo_query.txt \\\n"
            "      xm_integrations/data/demo_passages.jsonl --language auto --format table"
        ),
    )
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("-q", "--query", help="the query text")
    query.add_argument("--query-file", type=Path, help="a file holding the query (one line)")
    parser.add_argument(
        "passages", nargs="?", default="-",
        help="file of passages, one per line or JSON lines; '-' or nothing reads stdin",
    )
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL,
                        help=f"Hub repo id or local folder of an XMOD cross-encoder (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "-l", "--language",
        help="language of the passages without their own: a code, tag or name ('fr', 'pt-BR', 'German'), or "
             "'auto' to detect each one (default: the checkpoint's default language)",
    )
    parser.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="'text': one passage per line (blank lines skipped); 'jsonl': one JSON object or "
                             "string per line; 'auto' (default): jsonl when the first line starts with '{' or '\"'")
    parser.add_argument("--format", choices=("auto", "jsonl", "table"), default="auto",
                        help="output: JSON lines or a table (default: a table on a terminal, else JSON lines)")
    parser.add_argument("-k", "--top-k", type=_positive_int, help="print only the best K passages")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="pairs per forward pass (default: 32)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: the best available)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown on stderr when there is more than one batch)")
    parser.set_defaults(func=run)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def read_query(args: argparse.Namespace) -> str:
    """The query from ``--query`` or ``--query-file``."""
    if args.query is not None:
        query = args.query
    else:
        try:
            query = args.query_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read --query-file: {exc}") from exc
        if "\n" in query:
            raise InputError(f"{args.query_file} holds several lines; rerank takes one query (one line).")
    if not query.strip():
        raise InputError("the query is empty.")
    return query


def read_passages(lines: Iterable[str], input_format: str = "auto", source: str = "<stdin>") -> list[Passage]:
    """Parse passages, one per line or JSON lines (see the module docstring).

    Raises:
        InputError: a malformed JSON line, or an object without a string ``"text"``; the message
            names the source and line number.
    """
    lines = list(lines)
    if input_format == "auto":
        first = next((line.lstrip() for line in lines if line.strip()), "")
        input_format = "jsonl" if first[:1] in ("{", '"') else "text"
    if input_format == "text":
        return [Passage(line.rstrip("\r\n")) for line in lines if line.strip()]
    passages = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{number}: not valid JSON ({exc.msg}); use --input-format text for plain lines.") from exc
        if isinstance(record, str):
            record = {"text": record}
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f'{source}:{number}: expected a JSON string or an object with a string "text" field.')
        language = record.get("language")
        if language is not None and not isinstance(language, str):
            raise InputError(f'{source}:{number}: "language" must be a string such as "fr" or "auto".')
        passages.append(Passage(record["text"], record.get("id"), language))
    return passages


def _open_passages(path: str) -> tuple[list[str], str]:
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no passages: give a passages file, or pipe them on stdin.")
        return sys.stdin.readlines(), "<stdin>"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readlines(), path
    except OSError as exc:
        raise InputError(f"cannot read passages: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Run ``rerank``; returns the exit code."""
    try:
        query = read_query(args)
        lines, source = _open_passages(args.passages)
        passages = read_passages(lines, args.input_format, source)
    except InputError as exc:
        return _fail(str(exc))

    from xm_integrations.languages import UnknownLanguageError
    from xm_integrations.mono_xm import MonoXM
    from xm_integrations.reranking import pair_languages
    from xm_integrations.routing import MissingLanguageError

    try:
        model = MonoXM(args.model, device=args.device)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 1

    requested = [passage.language or args.language for passage in passages]
    try:
        codes = pair_languages(model, [(query, passage.text) for passage in passages], requested)
    except MissingLanguageError:
        return _fail(f"{args.model} has no default language: pass --language (e.g. --language fr, or --language auto "
                     'to detect each passage), or give each JSON line a "language".')
    except UnknownLanguageError as exc:
        return _fail(str(exc))

    show_progress = not args.no_progress and len(passages) > args.batch_size
    results = model.rank(query, [passage.text for passage in passages], language=codes, top_k=args.top_k,
                         batch_size=args.batch_size, show_progress_bar=show_progress)
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
    output_format = args.format if args.format != "auto" else ("table" if sys.stdout.isatty() else "jsonl")
    (_write_table if output_format == "table" else _write_jsonl)(rows, sys.stdout)
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return _USAGE_ERROR


def _write_jsonl(rows: list[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Rank, score, adapter, id (or input index) and the passage, cut to the terminal's width."""
    header = ("rank", "score", "language", "id", "passage")
    cells = [(str(row["rank"]), f"{row['score']:.4f}", row["language"], str(row.get("id", row["index"])), row["text"])
             for row in rows]
    widths = [max([len(header[column])] + [len(cell[column]) for cell in cells]) for column in range(4)]
    text_width = max(20, shutil.get_terminal_size((120, 24)).columns - sum(widths) - 2 * len(widths))
    for cell in [header, *cells]:
        text = " ".join(cell[4].split())
        text = text if len(text) <= text_width else text[: text_width - 1] + "…"
        fixed = "  ".join(value.rjust(width) if column < 2 else value.ljust(width)
                          for column, (value, width) in enumerate(zip(cell[:4], widths)))
        out.write(f"{fixed}  {text}\n")
