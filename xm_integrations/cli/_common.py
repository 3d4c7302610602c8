"""What the sub-commands share, kept in one place so that they behave as one tool.

* Registration (:func:`add_command`): every command shows its description as written and an
  ``examples:`` block, so ``--help`` reads the same everywhere.
* Passages (:class:`Passage`, :func:`read_passages`, :func:`load_passages`): ``rerank`` and
  ``search`` read the same files (one passage per line, or JSON lines), so a corpus prepared for
  one works with the other and both report a bad line the same way.
* Options (:func:`add_input_options`, :func:`add_run_options`): the flags the two model commands
  have in common are defined once, so their spelling, choices, defaults and help cannot drift.
* Output (:func:`output_format`, :func:`write_jsonl`, :func:`write_table`) and errors
  (:class:`InputError`, :func:`fail`, :func:`reports_errors`): one JSON-lines and table layout,
  one ``error: ...`` line with argparse's exit code for bad input.

Nothing here imports torch or the models, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from xm_integrations.errors import InputError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "InputError",
    "Passage",
    "add_command",
    "add_input_options",
    "add_run_options",
    "fail",
    "load_passages",
    "missing_language_message",
    "output_format",
    "positive_int",
    "read_passages",
    "reports_errors",
    "write_jsonl",
    "write_table",
]

#: Exit code for bad input or arguments: argparse's own, so a script cannot tell a bad flag from a bad file.
EXIT_USAGE = 2
#: Exit code for a failure that is not the input's fault (a model that cannot be loaded).
EXIT_FAILURE = 1


@dataclass(frozen=True)
class Passage:
    """One passage to rank, with what the input said about it."""

    text: str
    id: Any = None
    language: str | None = None


# -- registration and options -------------------------------------------------------------------------------------


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[str],
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """Register sub-command ``name`` with ``run`` as its ``func``; the caller adds its arguments.

    The description and the ``examples:`` lines are printed as written (no re-wrapping), so the
    examples can be copied into a shell; each line is indented by two spaces under the heading.
    """
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
    )
    parser.set_defaults(func=run)
    return parser


def positive_int(text: str) -> int:
    """argparse ``type`` for counts (``--top-k``, ``--batch-size``): a clear usage error on 0 or less."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_input_options(parser: argparse.ArgumentParser, *, passages: str, default_model: str, model_kind: str) -> None:
    """Add the passages file (positional ``passages``), ``--model`` and ``--language``.

    ``rerank`` and ``search`` read passages and pick their adapters the same way; defining the
    options here keeps them so. ``model_kind`` completes the ``--model`` help ("... of
    {model_kind}"). The command's own options go between this and :func:`add_run_options`.
    """
    parser.add_argument(passages, nargs="?", default="-",
                        help="file of passages, one per line or JSON lines; '-' or nothing reads stdin")
    parser.add_argument("-m", "--model", default=default_model,
                        help=f"Hub repo id or local folder of {model_kind} (default: {default_model})")
    parser.add_argument(
        "-l", "--language",
        help="language of the passages without their own: a code, tag or name ('fr', 'pt-BR', 'German'), or "
             "'auto' to detect each one (default: the checkpoint's default language)",
    )


def add_run_options(
    parser: argparse.ArgumentParser, *, batch_unit: str, progress_help: str, rows_per_line: str | None = None
) -> None:
    """Add ``--input-format``, ``--format``, ``--batch-size``, ``--device`` and ``--no-progress``.

    Shared for the same reason as :func:`add_input_options`. ``batch_unit`` says what a batch
    holds ("pairs", "texts"), ``rows_per_line`` what one JSON line is, when worth saying.
    """
    parser.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="'text': one passage per line (blank lines skipped); 'jsonl': one JSON object or "
                             "string per line; 'auto' (default): jsonl when the first line starts with '{' or '\"'")
    per_line = f" (one per {rows_per_line})" if rows_per_line else ""
    parser.add_argument("--format", choices=("auto", "jsonl", "table"), default="auto",
                        help=f"output: JSON lines{per_line} or a table (default: a table on a terminal, else JSON "
                             "lines)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help=f"{batch_unit} per forward pass (default: 32)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help=progress_help)


# -- passages -------------------------------------------------------------------------------------------------------


def read_passages(lines: Iterable[str], input_format: str = "auto", source: str = "<stdin>") -> list[Passage]:
    """Parse passages, one per line or JSON lines (``{"text": ..., "id": ..., "language": ...}``, only ``text`` required).

    ``input_format`` is ``"text"``, ``"jsonl"`` or ``"auto"`` (JSON lines when the first non-blank
    line starts with ``{`` or ``"``). Blank lines are skipped in both formats.

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


def load_passages(path: str, input_format: str = "auto") -> tuple[list[Passage], str]:
    """Read and parse the passages of ``path`` (``"-"``: stdin); returns them and the name to cite in messages.

    Raises:
        InputError: stdin is a terminal (nothing piped: waiting would look like a hang), the file
            cannot be read, or :func:`read_passages` refuses a line.
    """
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no passages: give a passages file, or pipe them on stdin.")
        lines, source = sys.stdin.readlines(), "<stdin>"
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                lines, source = handle.readlines(), path
        except OSError as exc:
            raise InputError(f"cannot read passages: {exc}") from exc
    return read_passages(lines, input_format, source), source


# -- errors -------------------------------------------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``error: MESSAGE`` on stderr and return ``code``: one line instead of a traceback."""
    print(f"error: {message}", file=sys.stderr)
    return code


def missing_language_message(model: str, detected: str) -> str:
    """What to say when ``model`` has no default adapter and the input named none.

    ``detected`` is what ``--language auto`` would detect the language of ("each passage", ...).
    """
    return (f"{model} has no default language: pass --language (e.g. --language fr, or --language auto to detect "
            f'{detected}), or give each JSON line a "language".')


def reports_errors(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorate a command's ``run`` so that known failures print one message and exit 1.

    The Hub commands (``convert``, ``evaluate``, ``push``) share this through
    :func:`xm_integrations.hub.cli_support.report_errors`, imported only when the command runs
    (the hub package pulls in torch and huggingface_hub).
    """

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def reporting(args: argparse.Namespace) -> int:
            from xm_integrations.hub.cli_support import report_errors

            return report_errors(command, lambda: run(args))

        return reporting

    return decorate


# -- output -----------------------------------------------------------------------------------------------------------


def output_format(requested: str) -> str:
    """``--format``: ``"auto"`` is a table on a terminal (for people), JSON lines otherwise (for programs)."""
    if requested != "auto":
        return requested
    return "table" if sys.stdout.isatty() else "jsonl"


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """One JSON object per line, non-ASCII text kept as is (passages are multilingual)."""
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_table(header: Sequence[str], cells: Sequence[Sequence[str]], out: TextIO, *, numeric: int) -> None:
    """Aligned columns with the passage text last, folded to one line and cut to the terminal's width.

    The first ``numeric`` columns (rank, scores) are right-aligned, the others left-aligned; the
    text column gets what the terminal has left, at least 20 characters.
    """
    fixed = len(header) - 1
    widths = [max([len(header[column])] + [len(cell[column]) for cell in cells]) for column in range(fixed)]
    text_width = max(20, shutil.get_terminal_size((120, 24)).columns - sum(widths) - 2 * fixed)
    for cell in [header, *cells]:
        text = " ".join(cell[-1].split())
        text = text if len(text) <= text_width else text[: text_width - 1] + "…"
        columns = "  ".join(value.rjust(width) if column < numeric else value.ljust(width)
                            for column, (value, width) in enumerate(zip(cell[:fixed], widths)))
        out.write(f"{columns}  {text}\n")
