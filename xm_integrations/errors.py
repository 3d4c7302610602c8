"""Every exception xm_integrations defines, under one base class.

Each class derives from :class:`XMIntegrationsError` *and* from the builtin it stands for
(``ValueError`` for bad values, ``FileNotFoundError`` for a missing file, ``RuntimeError`` for a
failure at run time), so ``except ValueError`` keeps working where stock code would raise one, and
``except XMIntegrationsError`` catches everything this package raises on purpose (the command line
does exactly that). This module imports nothing heavy: ``import xm_integrations`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AdapterIndexError",
    "ArgumentTypeError",
    "CheckpointError",
    "DatasetFormatError",
    "DuplicateIdError",
    "IndexBackendError",
    "IndexFormatError",
    "IndexModelMismatchError",
    "InputError",
    "InputFileNotFoundError",
    "InvalidArgumentError",
    "MissingCheckpointFileError",
    "MissingExtraError",
    "MissingLanguageError",
    "MissingTokenError",
    "ModelFolderError",
    "OutputExistsError",
    "PoolWorkerError",
    "RayClusterUnavailable",
    "RepoIdError",
    "UnknownLanguageError",
    "UploadError",
    "ValidationError",
    "XMIntegrationsError",
]


class XMIntegrationsError(Exception):
    """Base class of every exception defined by xm_integrations; the message says what to do."""


class UnknownLanguageError(XMIntegrationsError, ValueError):
    """A language cannot be mapped to an adapter of the loaded checkpoint.

    Attributes:
        language: What was asked for.
        available: The adapters the checkpoint has.
        suggestions: The closest adapter codes (or ``"auto"``), best first.
        reason: Why it failed, without the suggestions.
    """

    def __init__(self, language: object, available: Sequence[str], suggestions: Sequence[str], reason: str):
        self.language = language
        self.available = tuple(available)
        self.suggestions = tuple(suggestions)
        self.reason = reason
        closest = f" Closest: {', '.join(self.suggestions)}." if self.suggestions else ""
        super().__init__(
            f"Unknown language {language!r}: {reason}.{closest} "
            f"The checkpoint's {len(self.available)} adapters are: {', '.join(self.available)}."
        )

    def __reduce__(self) -> tuple[Any, ...]:  # pickles into and out of pool workers
        return (UnknownLanguageError, (self.language, self.available, self.suggestions, self.reason))


class MissingLanguageError(XMIntegrationsError, ValueError):
    """No language was given and the checkpoint has no ``default_language``."""


class AdapterIndexError(XMIntegrationsError, IndexError):
    """Adapter indices outside the checkpoint's languages (XMOD would silently zero that adapter's output).

    Attributes:
        bad_ids: The offending indices, sorted.
        num_languages: How many adapters the checkpoint has.
    """

    def __init__(self, bad_ids: Sequence[int], num_languages: int) -> None:
        self.bad_ids, self.num_languages = sorted(bad_ids), num_languages
        super().__init__(f"Language adapter ids {self.bad_ids} are out of range: the checkpoint has {num_languages} "
                         f"adapters (ids 0 to {num_languages - 1}).")

    def __reduce__(self) -> tuple[Any, ...]:
        return (AdapterIndexError, (self.bad_ids, self.num_languages))


class CheckpointError(XMIntegrationsError, ValueError):
    """A checkpoint that cannot work: a file is corrupt, inconsistent, or of the wrong kind of model.

    Attributes:
        file: The offending file (or folder), as a local path or ``repo_id/filename``.
    """

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self._init_args = (file, problem)
        super().__init__(f"{file}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickles into and out of pool workers
        return (type(self), self._init_args)


class MissingCheckpointFileError(CheckpointError, FileNotFoundError):
    """A file the checkpoint needs is absent (tokenizer, weights, ``artifact.metadata``, ...).

    The message reads ``{file} is missing: {explanation}``.
    """

    def __init__(self, file: str, explanation: str) -> None:
        self.file = file
        self._init_args = (file, explanation)
        Exception.__init__(self, f"{file} is missing: {explanation}")

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would print errno fields
        return Exception.__str__(self)


class ModelFolderError(XMIntegrationsError, ValueError):
    """The folder is not a model this package can handle; the message says what is missing and what to do."""


class ValidationError(XMIntegrationsError, RuntimeError):
    """Stock libraries and xm_integrations disagree on a folder (or the stock ones cannot load it): nothing is uploaded.

    Attributes:
        report: The :class:`~xm_integrations.hub.validate.ValidationReport` with every check.
    """

    def __init__(self, report: Any, hint: str) -> None:
        self.report = report
        failed = [check for check in report.checks if not check.passed]
        super().__init__(
            f"Validation of {report.folder} failed ({len(failed)} of {len(report.checks)} checks).\n"
            f"{report.describe()}" + (f"\n{hint}" if hint else "")
        )


class MissingTokenError(XMIntegrationsError, RuntimeError):
    """No Hugging Face token was found, so nothing can be uploaded."""


class UploadError(XMIntegrationsError, RuntimeError):
    """The Hub refused or failed the upload; the message is the Hub's, with any token removed."""


class DatasetFormatError(XMIntegrationsError, ValueError):
    """A dataset folder or file that is not in a layout the evaluation reads; the message says which files it expects."""


class InputError(XMIntegrationsError, ValueError):
    """Bad command-line input (a file, a flag's value); the message says where and what to do."""


class PoolWorkerError(XMIntegrationsError, RuntimeError):
    """A multi-process pool worker died or failed; the message names it and carries its error."""


class ArgumentTypeError(XMIntegrationsError, TypeError):
    """An argument of the wrong type; the message names the argument and what it accepts."""


class InvalidArgumentError(XMIntegrationsError, ValueError):
    """An argument that cannot work (a missing option, a file of the wrong kind, values that contradict)."""


class RepoIdError(InvalidArgumentError):
    """A Hub repo id that is not ``namespace/name`` as the Hub spells them."""


class OutputExistsError(XMIntegrationsError, FileExistsError):
    """An output folder that exists and is not empty; nothing was written."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class InputFileNotFoundError(XMIntegrationsError, FileNotFoundError):
    """An input file named by an argument does not exist."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class IndexFormatError(XMIntegrationsError, ValueError):
    """A folder that is not an index this package wrote (foreign, corrupt, or of a newer format); nothing was changed."""


class IndexModelMismatchError(XMIntegrationsError, ValueError):
    """An encoder whose vectors would not be comparable with those of the index (another model, dim, lengths, markers).

    Attributes:
        differences: ``(field, in the index, in the model)`` for every field that differs.
    """

    def __init__(self, path: str, differences: Sequence[tuple[str, Any, Any]]) -> None:
        self.path = path
        self.differences = tuple(differences)
        listed = "; ".join(f"{field}: index {ours!r}, model {theirs!r}" for field, ours, theirs in self.differences)
        super().__init__(
            f"The index {path} was built with another encoder ({listed}). Search and extend it with the model that "
            f"built it, or build a new index for this model."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (IndexModelMismatchError, (self.path, self.differences))


class DuplicateIdError(XMIntegrationsError, ValueError):
    """The same document id twice in one batch, or an id already in the index where ``on_existing="error"``."""


class IndexBackendError(XMIntegrationsError, RuntimeError):
    """The index's engine (a Qdrant server, say) failed, after retries where the error was transient; nothing was assumed written."""


class RayClusterUnavailable(XMIntegrationsError, RuntimeError):
    """This machine cannot run a local multi-node Ray cluster (the message says why), or it failed to start."""


class MissingExtraError(XMIntegrationsError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that adds it."""
