"""The ``xm-integrations`` command line (also ``python -m xm_integrations``).

Each sub-command lives in its own module exposing ``add_parser(subparsers)``, which registers the
command and sets ``func`` (called with the parsed arguments, returning an exit code). Commands raise;
:func:`main` turns what they raise into the one error convention of every command: one
``xm-integrations COMMAND: error: ...`` line on stderr naming the problem and the fix, exit 2 for bad
input or arguments, 1 for a failure that is not the input's fault, no traceback; a reader that
closes the output pipe (``| head -1``) ends the command quietly. Tokens are removed from messages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from xm_integrations.cli._common import EXIT_FAILURE, EXIT_USAGE, exit_code_for, fail, quiet_progress
from xm_integrations.errors import XMIntegrationsError

__all__ = ["build_parser", "main"]

#: Sub-command modules, in the order ``--help`` lists them.
_COMMANDS: tuple[str, ...] = ("rerank", "index", "search", "convert", "evaluate", "push")


class _Parser(argparse.ArgumentParser):
    """argparse with the package's error line: one line (no usage block), pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = _Parser(prog="xm-integrations", description="Multilingual retrieval and reranking with XMOD models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"xm_integrations.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if sys.stderr is None or not sys.stderr.isatty():
        quiet_progress()  # loading and download bars are carriage-return noise in a log or a pipe
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here for output still in the buffer
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        return fail("interrupted.", 130, args.command)
    except XMIntegrationsError as error:
        return _report(error, exit_code_for(error), args.command)
    except OSError as error:  # the disk, the network, a model's files: not the input's fault
        return _report(error, EXIT_FAILURE, args.command)


def _report(error: BaseException, code: int, command: str) -> int:
    """One line for bad input; a failure's report (a validation table) keeps its lines, after the error line."""
    message = _redact(str(error))
    first, _, rest = message.partition("\n")
    if code == EXIT_USAGE or not rest.strip():
        return fail(message, code, command)
    fail(first, code, command)
    print(rest, file=sys.stderr)
    return code


def _redact(text: str) -> str:
    """``text`` without the Hugging Face token, wherever it came from."""
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "hf_***") if token else text


def _closed_pipe() -> int:
    """The reader went away: stop writing, and keep the interpreter's exit flush from failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
