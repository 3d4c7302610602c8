"""What the ``convert``, ``push`` and ``evaluate`` commands share: turning known errors into a message and an exit code.

A known failure (bad folder, validation mismatch, Hub error, bad dataset) prints one clear message
on stderr, without a traceback, and exits 1; bad arguments exit 2 as argparse does. Any token found
in the environment is removed from what is printed, whatever the message.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "report_errors"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _known_errors() -> tuple[type[BaseException], ...]:
    from xm_integrations.evaluation import DatasetFormatError
    from xm_integrations.hub.model_folder import ModelFolderError
    from xm_integrations.hub.upload import MissingTokenError, UploadError
    from xm_integrations.hub.validate import ValidationError
    from xm_integrations.languages import UnknownLanguageError

    return (DatasetFormatError, ModelFolderError, MissingTokenError, UploadError, ValidationError,
            UnknownLanguageError, FileExistsError, FileNotFoundError, ValueError)


def _redact(text: str) -> str:
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "hf_***") if token else text


def report_errors(command: str, run: Callable[[], int]) -> int:
    """Run ``run``; a known error becomes ``xm-integrations COMMAND: error: MESSAGE`` on stderr and exit code 1."""
    try:
        return run()
    except _known_errors() as error:
        print(f"xm-integrations {command}: error: {_redact(str(error))}", file=sys.stderr)
        return EXIT_FAILURE
