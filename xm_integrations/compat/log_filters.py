"""Logging filters, each applied to one logger for the duration of one call.

Upstream libraries log things that are expected for our models and would make a correct call look
broken: transformers' load report for colbert-ai checkpoints, and sentence-transformers' model-card
usage snippet, which cannot run on a model saved without a default language (the save itself warns
about that, once, with the fix). Each filter drops only those records; anything else passes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DropAll", "ExpectedColBERTLoadReport", "log_filter", "without_default_language_snippet_error"]

#: The logger of sentence-transformers' model-card code (``base/model_card.py``).
_MODEL_CARD_LOGGER = "sentence_transformers.base.model_card"


class ExpectedColBERTLoadReport(logging.Filter):
    """Drops transformers' load report when it lists only what every ``HF_ColBERT`` load has.

    Loading ``roberta.*`` into ``XmodModel`` leaves ``linear.weight`` unused (the ``Dense`` module
    takes it) and the pooler uninitialised (never used by ColBERT): reporting those on every load
    would make a correct load look broken. Any other entry keeps the report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line.split("|") for line in message.splitlines() if line.count("|") >= 1]
        entries = [(row[0].strip(), row[1].strip()) for row in rows if len(row) > 1 and row[0].strip()]
        entries = [(key, status) for key, status in entries if key != "Key" and not set(key) <= {"-", "+"}]
        expected = all(
            (key == "linear.weight" and status.startswith("UNEXPECTED"))
            or (key.startswith("pooler.") and status.startswith("MISSING"))
            for key, status in entries
        )
        return not (entries and expected)


class DropAll(logging.Filter):
    """Drops every record (for a check whose warnings are its point)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def log_filter(logger_name: str, log_filter: logging.Filter | None) -> Iterator[None]:
    """Apply ``log_filter`` to one logger for the duration of the block (``None``: no filter)."""
    if log_filter is None:
        yield
        return
    target = logging.getLogger(logger_name)
    target.addFilter(log_filter)
    try:
        yield
    finally:
        target.removeFilter(log_filter)


class _SnippetWithoutLanguage(logging.Filter):
    """Drops the model card's "usage snippet" error caused by a missing default language (and nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("usage snippet" in message and "no default_language" in message)


def without_default_language_snippet_error(model_has_default: bool) -> Iterator[None]:
    """During a save: drop the card's snippet error when the model has no default language (save warns instead)."""
    return log_filter(_MODEL_CARD_LOGGER, None if model_has_default else _SnippetWithoutLanguage())
