"""What the sub-commands share, kept in one place so that they behave as one tool.

* Registration (:func:`add_command`): every command shows its description as written and an
  ``examples:`` block, so ``--help`` reads the same everywhere.
* Passages (:class:`Passage`, :func:`read_passages`, :func:`load_passages`): ``rerank`` and
  ``search`` read the same files (one passage per line, or JSON lines), so a corpus prepared for
  one works with the other and both report a bad line the same way.
* Options (:func:`add_input_options`, :func:`add_run_options`): the flags the two model commands
  have in common are defined once, so their spelling, choices, defaults and help cannot drift.
* Output (:func:`output_format`, :func:`write_jsonl`, :func:`write_table`): one JSON-lines and
  table layout; terminal control characters in passages never reach a table.
* Errors (:func:`fail`, :func:`exit_code_for`): every command reports a failure as one
  ``xm-integrations COMMAND: error: ...`` line on stderr; exit 2 for bad input or arguments, 1 for a
  failure that is not the input's fault. :func:`xm_integrations.cli.main` applies it to whatever a
  command raises, so a command only raises.

Nothing here imports torch or the models, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from xm_integrations.errors import (
    AdapterIndexError,
    ArgumentTypeError,
    CheckpointError,
    DatasetFormatError,
    DuplicateIdError,
    IndexFormatError,
    IndexModelMismatchError,
    InputError,
    InputFileNotFoundError,
    InvalidArgumentError,
    MissingLanguageError,
    ModelFolderError,
    OutputExistsError,
    UnknownLanguageError,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "InputError",
    "Passage",
    "add_command",
    "add_input_options",
    "add_run_options",
    "check_device",
    "exit_code_for",
    "fail",
    "iter_passages",
    "load_passages",
    "load_run_inputs",
    "missing_language_message",
    "output_format",
    "positive_int",
    "quiet_progress",
    "read_passages",
    "read_text_file",
    "stream_passages",
    "terminal_safe",
    "write_jsonl",
    "write_table",
]

#: Exit code for bad input or arguments: argparse's own, so a script cannot tell a bad flag from a bad file.
EXIT_USAGE = 2
#: Exit code for a failure that is not the input's fault (a network error, a failed upload or validation).
EXIT_FAILURE = 1

#: The package errors that mean bad input or arguments (exit 2); any other package error exits 1.
BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (
    AdapterIndexError, ArgumentTypeError, CheckpointError, DatasetFormatError, DuplicateIdError, IndexFormatError,
    IndexModelMismatchError, InputError, InputFileNotFoundError, InvalidArgumentError, MissingLanguageError,
    ModelFolderError, OutputExistsError, UnknownLanguageError,
)


@dataclass(frozen=True)
class Passage:
    """One passage to rank, with what the input said about it."""

    text: str
    id: Any = None
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """The passage as :meth:`xm_integrations.index.MultiVectorIndex.add_documents` takes it (metadata as keys)."""
        record = {**self.metadata, "text": self.text}
        if self.id is not None:
            record["id"] = self.id
        if self.language is not None:
            record["language"] = self.language
        return record


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


def positive_float(text: str) -> float:
    """argparse ``type`` for amounts (``--ray-gpus-per-actor``): a clear usage error on 0, less, or not a number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` for counts (``--top-k``, ``--batch-size``): a clear usage error on 0 or less."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_input_options(parser: argparse.ArgumentParser, *, passages: str, default_model: str, model_kind: str,
                      model_note: str = "") -> None:
    """Add the passages file (positional ``passages``), ``--model`` and ``--language``.

    ``rerank`` and ``search`` read passages and pick their adapters the same way; defining the
    options here keeps them so. ``model_kind`` completes the ``--model`` help ("... of
    {model_kind}"), ``model_note`` its default. The command's own options go between this and
    :func:`add_run_options`.
    """
    parser.add_argument(passages, nargs="?", default="-",
                        help="file of passages, one per line or JSON lines; '-' or nothing reads stdin")
    parser.add_argument("-m", "--model", default=default_model,
                        help=f"Hub repo id or local folder of {model_kind} (default: {default_model}{model_note})")
    parser.add_argument(
        "-l", "--language",
        help="language of the passages without their own: a code, tag or name ('fr', 'pt-BR', 'German'), or "
             "'auto' to detect each one (default: the checkpoint's default language)",
    )


def add_run_options(
    parser: argparse.ArgumentParser, *, batch_unit: str, progress_help: str, rows_per_line: str | None = None,
    output: bool = True,
) -> None:
    """Add ``--input-format``, ``--format``, ``--batch-size``, ``--device`` and ``--no-progress``.

    Shared for the same reason as :func:`add_input_options`. ``batch_unit`` says what a batch
    holds ("pairs", "texts"), ``rows_per_line`` what one JSON line is, when worth saying;
    ``output=False`` leaves ``--format`` out (a command that prints no results).
    """
    parser.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="'text': one passage per line (blank lines skipped); 'jsonl': one JSON object or "
                             "string per line; 'auto' (default): jsonl when the first line starts with '{' or '\"'")
    per_line = f" (one per {rows_per_line})" if rows_per_line else ""
    if output:
        parser.add_argument("--format", choices=("auto", "jsonl", "table"), default="auto",
                            help=f"output: JSON lines{per_line} or a table (default: a table on a terminal, else "
                                 "JSON lines)")
    parser.add_argument("--batch-size", type=positive_int,
                        help=f"the most {batch_unit} per forward pass (default: as many as --max-batch-tokens allows)")
    parser.add_argument("--max-batch-tokens", type=positive_int,
                        help="padded tokens per forward pass, the bound on its memory (default: 32768 on CUDA, 4096 "
                             "on CPU)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help=progress_help)


# -- passages -------------------------------------------------------------------------------------------------------


def read_passages(lines: Iterable[str], input_format: str = "auto", source: str = "<stdin>") -> list[Passage]:
    """Parse passages, one per line or JSON lines (``{"text": ..., "id": ..., "language": ...}``, only ``text`` required).

    ``input_format`` is ``"text"``, ``"jsonl"`` or ``"auto"`` (JSON lines when the first non-blank
    line starts with ``{`` or ``"``). Blank lines are skipped in both formats. The other fields of
    a JSON object are kept as the passage's ``metadata``.

    Raises:
        InputError: a malformed JSON line, or an object without a string ``"text"``; the message
            names the source and line number.
    """
    return list(iter_passages(lines, input_format, source))


def iter_passages(lines: Iterable[str], input_format: str = "auto", source: str = "<stdin>") -> Iterator[Passage]:
    """:func:`read_passages`, lazily: a line is read only when its passage is asked for (a corpus of any size).

    A bad line raises when it is reached, after every passage before it was yielded.
    """
    lines = iter(lines)
    buffered: list[str] = []
    if input_format == "auto":
        for line in lines:
            buffered.append(line)
            if line.strip():
                break
        first = next((line.lstrip() for line in buffered if line.strip()), "")
        input_format = "jsonl" if first[:1] in ("{", '"') else "text"
    for number, line in enumerate(itertools.chain(buffered, lines), start=1):
        if not line.strip():
            continue
        if input_format == "text":
            yield Passage(line.rstrip("\r\n"))
        else:
            yield _json_passage(line, number, source)


def _json_passage(line: str, number: int, source: str) -> Passage:
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
    metadata = {key: value for key, value in record.items() if key not in ("text", "id", "language")}
    return Passage(record["text"], record.get("id"), language, metadata)


def load_passages(path: str, input_format: str = "auto") -> tuple[list[Passage], str]:
    """Read and parse the passages of ``path`` (``"-"``: stdin); returns them and the name to cite in messages.

    Raises:
        InputError: stdin is a terminal (nothing piped: waiting would look like a hang), the file
            cannot be read, or :func:`read_passages` refuses a line.
    """
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no passages: give a passages file, or pipe them on stdin.")
        raw = getattr(sys.stdin, "buffer", None)  # bytes, so that a non-UTF-8 stream gets a clear error
        text = _decode(raw.read(), "<stdin>") if raw is not None else sys.stdin.read().lstrip("\ufeff")
        source = "<stdin>"
    else:
        text, source = read_text_file(path, "passages"), path
    return read_passages(text.splitlines(keepends=True), input_format, source), source


def stream_passages(path: str, input_format: str = "auto") -> tuple[Iterator[Passage], str]:
    """The passages of ``path`` (``"-"``: stdin) read line by line, for corpora too large to read at once.

    Returns the passages (lazily) and the name to cite in messages. A line that is not UTF-8 or
    not a passage raises :class:`InputError` when it is reached, naming the line.

    Raises:
        InputError: stdin is a terminal, or the file cannot be opened.
    """
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no passages: give a passages file, or pipe them on stdin.")
        raw, source = getattr(sys.stdin, "buffer", None) or sys.stdin, "<stdin>"
    else:
        try:
            raw, source = open(path, "rb"), path  # noqa: SIM115 - closed by _decoded_lines once read
        except OSError as exc:
            raise InputError(f"cannot read passages file {path}: {exc.strerror or exc}.") from None
    return iter_passages(_decoded_lines(raw, source), input_format, source), source


def _decoded_lines(raw: Any, source: str) -> Iterator[str]:
    try:
        for number, line in enumerate(raw, start=1):
            if isinstance(line, str):
                yield line.lstrip("\ufeff") if number == 1 else line
                continue
            try:
                yield line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(_not_utf8(source, number, line[exc.start])) from None
    finally:
        if source != "<stdin>":
            raw.close()


def load_run_inputs(args: argparse.Namespace, path: str, what: str) -> list[Passage]:
    """What ``rerank`` and ``search`` check before loading a model: non-empty passages, a device this machine has.

    Also applies ``--no-progress``. ``what`` names the passages in the message ("the corpus").

    Raises:
        InputError: no passage in ``path``, or a ``--device`` that does not exist here.
    """
    passages, source = load_passages(path, args.input_format)
    if not passages:
        raise InputError(f"{what} {source} holds no passage (blank lines are skipped); give at least one.")
    check_device(args.device)
    if args.no_progress:
        quiet_progress()
    return passages


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped), or an :class:`InputError` naming the file.

    Raises:
        InputError: the file cannot be read, or is not UTF-8 (the message says how to convert it).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} file {path}: {exc.strerror or exc}.") from None
    return _decode(data, str(path))


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(_not_utf8(source, data[: exc.start].count(b"\n") + 1, data[exc.start])) from None


def _not_utf8(source: str, line: int, byte: int) -> str:
    """The message for a line that is not UTF-8, with the command that converts the file."""
    return (f"{source}:{line}: not UTF-8 text (byte 0x{byte:02x}); convert the file to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {source if source != '<stdin>' else 'FILE'}.")


# -- errors -------------------------------------------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_USAGE, command: str | None = None) -> int:
    """Print ``xm-integrations COMMAND: error: MESSAGE`` on stderr as one line and return ``code``."""
    prefix = f"xm-integrations {command}" if command else "xm-integrations"
    print(f"{prefix}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def exit_code_for(error: BaseException) -> int:
    """2 for bad input or arguments (:data:`BAD_INPUT_ERRORS`), 1 for any other failure."""
    return EXIT_USAGE if isinstance(error, BAD_INPUT_ERRORS) else EXIT_FAILURE


def missing_language_message(model: str, detected: str) -> str:
    """What to say when ``model`` has no default adapter and the input named none.

    ``detected`` is what ``--language auto`` would detect the language of ("each passage", ...).
    """
    return (f"{model} has no default language: pass --language (e.g. --language fr, or --language auto to detect "
            f'{detected}), or give each JSON line a "language".')


def check_device(device: str | None) -> str | None:
    """``--device`` as torch names it, refused at once when it does not exist here.

    Raises:
        InputError: not a torch device name, or a device this machine does not have.
    """
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:0, mps, ...") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device}: CUDA is not available on this machine; use --device cpu, or leave "
                             "--device out for the best available device.")
        if parsed.index is not None and parsed.index >= count:
            raise InputError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu.")
    return device


def quiet_progress() -> None:
    """Switch off the progress bars of transformers ("Loading weights") and huggingface_hub (downloads)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    disable_progress_bars()


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


#: Bidirectional overrides and isolates: they reorder what a terminal shows after them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def terminal_safe(text: str) -> str:
    """``text`` with control characters (escape sequences, carriage returns, bidi overrides) shown as escapes.

    A passage holding ``\x1b[2J`` would otherwise clear the screen of whoever reads the table.
    Tabs and newlines are kept (the table folds them into spaces).
    """
    if text.isprintable():
        return text
    return "".join(
        char if char in "\t\n" or not (unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS)
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def write_table(header: Sequence[str], cells: Sequence[Sequence[str]], out: TextIO, *, numeric: int) -> None:
    """Aligned columns with the passage text last, folded to one line and cut to the terminal's width.

    The first ``numeric`` columns (rank, scores) are right-aligned, the others left-aligned; the
    text column gets what the terminal has left, at least 20 characters.
    """
    cells = [[terminal_safe(value) for value in cell] for cell in cells]
    fixed = len(header) - 1
    widths = [max([len(header[column])] + [len(cell[column]) for cell in cells]) for column in range(fixed)]
    text_width = max(20, shutil.get_terminal_size((120, 24)).columns - sum(widths) - 2 * fixed)
    for cell in [header, *cells]:
        text = " ".join(cell[-1].split())
        text = text if len(text) <= text_width else text[: text_width - 1] + "…"
        columns = "  ".join(value.rjust(width) if column < numeric else value.ljust(width)
                            for column, (value, width) in enumerate(zip(cell[:fixed], widths)))
        out.write(f"{columns}  {text}\n")
