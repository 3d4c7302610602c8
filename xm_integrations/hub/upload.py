"""Publish a model folder on the Hugging Face Hub: validate, render the card, upload in one commit.

Why one ``create_commit`` rather than ``HfApi.upload_folder``: with ``hf_xet`` installed (a
dependency of huggingface_hub 2.x) ``upload_folder`` goes through a streamed pipeline that may split
a folder into several commits, so a failure could leave the repo with half a model. All files here
go into a single commit, which the Hub applies all at once or not at all.

Nothing is ever written into the model folder: the card is uploaded from memory, and a dry run
writes into a fresh temporary folder beside its target and renames it into place only when it is
complete.

The token comes from huggingface_hub's usual sources (``HF_TOKEN``, the file written by
``hf auth login``) or the ``token`` argument; it is never printed, logged, or kept in error messages.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from xm_integrations.errors import (
    InputFileNotFoundError,
    InvalidArgumentError,
    MissingTokenError,
    OutputExistsError,
    RepoIdError,
    UploadError,
)
from xm_integrations.hub.cards import CardOptions, render_model_card
from xm_integrations.hub.model_folder import ModelFolder, ModelFolderError, read_model_folder
from xm_integrations.hub.validate import DEFAULT_TOLERANCE, ValidationReport, validate_model_folder

__all__ = [
    "MissingTokenError",
    "PushResult",
    "StagedFile",
    "PICKLE_SUFFIXES",
    "UploadError",
    "check_repo_id",
    "check_serialization",
    "format_file_table",
    "load_eval_results",
    "plan_upload",
    "push_to_hub",
    "write_dry_run",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedFile:
    """One file of the commit: a file of the model folder, or generated content (the card)."""

    path_in_repo: str
    source: Path | None = None
    content: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else self.source.stat().st_size  # type: ignore[union-attr]

    def operation(self) -> CommitOperationAdd:
        data: Any = self.content if self.content is not None else str(self.source)
        return CommitOperationAdd(path_in_repo=self.path_in_repo, path_or_fileobj=data)


@dataclass
class PushResult:
    """What :func:`push_to_hub` did.

    Attributes:
        repo_id: The target repo.
        files: Every file of the commit (or of the dry run).
        report: The validation report.
        dry_run_dir: Where the dry run wrote the files (``None`` for a real upload).
        repo_url, commit_url, pr_url: From the Hub (``None`` in a dry run).
        changed: ``False`` when the repo already held exactly these files (nothing was committed).
    """

    repo_id: str
    files: list[StagedFile]
    report: ValidationReport
    dry_run_dir: Path | None = None
    repo_url: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None
    changed: bool = True
    warnings: list[str] = field(default_factory=list)


def _upload_token(token: str | None) -> str:
    """The token to upload with (the argument, else huggingface_hub's), refused at once when offline or missing."""
    if _offline():
        raise UploadError("HF_HUB_OFFLINE is set, so huggingface_hub refuses to reach the Hub: unset it to upload, "
                          "or use --dry-run OUT_DIR to see what would be uploaded.")
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "No Hugging Face token found, so nothing can be uploaded. Log in with `hf auth login`, or set the "
            "HF_TOKEN environment variable to a token with write access (https://huggingface.co/settings/tokens); "
            "use --dry-run OUT_DIR to see what would be uploaded without one."
        )
    return token


def check_repo_id(repo_id: str) -> None:
    """Refuse a repo id the Hub would refuse: it must be ``namespace/name`` in the Hub's characters.

    Raises:
        RepoIdError: naming the id and the rule it breaks.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise RepoIdError(f"Invalid repo id {repo_id!r}: write namespace/name (your user or organization, a slash, "
                          "the model's name), e.g. alice/mono-xm-fr.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise RepoIdError(f"Invalid repo id {repo_id!r}: {error}") from None


def load_eval_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read results files written by ``xm-integrations evaluate`` (their format is checked when the card is rendered)."""
    documents = []
    for path in paths:
        try:
            documents.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputFileNotFoundError(f"Evaluation results file {path} does not exist.") from None
        except json.JSONDecodeError as error:
            raise InvalidArgumentError(f"{path} is not JSON ({error}); pass a file written by `xm-integrations evaluate`.") from None
    return documents


def plan_upload(folder: ModelFolder, card_text: str) -> list[StagedFile]:
    """The files of the commit: the folder's files, with its README.md replaced by the rendered card."""
    files = [StagedFile(relative.as_posix(), source=folder.path / relative)
             for relative in folder.files if relative.as_posix() != "README.md"]
    files.append(StagedFile("README.md", content=card_text.encode("utf-8")))
    return sorted(files, key=lambda file: file.path_in_repo)


def format_file_table(files: Sequence[StagedFile]) -> str:
    """A listing of paths and sizes, largest last column aligned, with the total."""
    width = max(len(file.path_in_repo) for file in files)
    lines = [f"  {file.path_in_repo:<{width}}  {_human(file.size):>10}" for file in files]
    lines.append(f"  {'total':<{width}}  {_human(sum(file.size for file in files)):>10}  ({len(files)} files)")
    return "\n".join(lines)


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value, unit = float(size) / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


def write_dry_run(files: Sequence[StagedFile], out_dir: str | Path, model_dir: Path | None = None) -> Path:
    """Write exactly the files of the commit into ``out_dir``, all or nothing.

    The files go into a temporary folder beside ``out_dir``, which is renamed to ``out_dir`` once
    complete; a failure removes it and leaves ``out_dir`` as it was.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty.
        ValueError: ``out_dir`` is inside the model folder (the folder must stay untouched).
    """
    out_dir = Path(out_dir).absolute()
    if model_dir is not None and out_dir.resolve().is_relative_to(model_dir.resolve()):
        raise InvalidArgumentError(f"The dry-run folder {out_dir} is inside the model folder {model_dir}; choose one outside it.")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputExistsError(f"{out_dir} already exists and is not empty; remove it or choose another dry-run folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for file in files:
            target = staging / file.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            if file.content is not None:
                target.write_bytes(file.content)
            else:
                shutil.copyfile(file.source, target)  # type: ignore[arg-type]
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


#: File suffixes of pickled Python objects: loading them runs arbitrary code, so they are never published.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def check_serialization(folder: ModelFolder) -> None:
    """Refuse a folder that holds pickled files, or weights that are not in safetensors.

    Whoever loads the published repo must never have to unpickle anything: stock loaders fall back
    to ``pytorch_model.bin`` when no safetensors file is there, and other pickles are a trap for users.

    Raises:
        ModelFolderError: the message names the files and how to re-save the model.
    """
    pickled = [relative.as_posix() for relative in folder.files if relative.suffix.lower() in PICKLE_SUFFIXES]
    if pickled:
        raise ModelFolderError(
            f"{folder.path} holds pickled files ({', '.join(pickled)}); loading them can run arbitrary code, so they "
            "are not published. Re-save the model with save_pretrained (safetensors) or `xm-integrations convert`, "
            "and remove the pickled files (or push a copy of the folder without them)."
        )
    if not any(relative.name.endswith(".safetensors") and len(relative.parts) == 1 for relative in folder.files):
        raise ModelFolderError(
            f"{folder.path} has no safetensors weights at its root (model.safetensors or its shards); re-save the "
            "model with save_pretrained, or convert it with `xm-integrations convert`."
        )


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What talking to the Hub can raise: HTTP errors, offline mode, and the HTTP client's transport errors."""
    errors: list[type[BaseException]] = [HfHubHTTPError, OfflineModeIsEnabled, OSError]
    for module in ("httpx2", "httpx", "requests"):  # huggingface_hub 2.x uses httpx2, 1.x httpx
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _offline() -> bool:
    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline()) if callable(is_offline) else bool(constants.HF_HUB_OFFLINE)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    dry_run_dir: str | Path | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    eval_results: Sequence[Mapping[str, Any]] = (),
    card_options: CardOptions | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> PushResult:
    """Validate ``model_dir``, render its card, and upload both to ``repo_id`` in one commit (or write a dry run).

    Re-running the same upload is harmless: the repo is created only if missing, and when it already
    holds exactly these files the Hub is left unchanged (no empty commit).

    Args:
        model_dir: The model folder (as ``save_pretrained`` or ``xm-integrations convert`` wrote it).
        repo_id: ``namespace/name`` on the Hub; the card's snippets load the model by this id.
        dry_run_dir: Write the exact files of the commit here instead of uploading.
        private: Visibility of a repo created by this call (an existing repo keeps its own).
        revision: The branch to commit to (created from ``main`` if missing); ``main`` by default.
        create_pr: Open a pull request with the commit instead of committing to the branch.
        eval_results: Results documents of ``xm-integrations evaluate``, put in the card's ``model-index``.
        card_options: License, base model, datasets, tags (eval results are taken from ``eval_results``).
        token: A Hugging Face token; by default huggingface_hub's (``HF_TOKEN``, ``hf auth login``).
        endpoint: The Hub's URL; by default huggingface_hub's (``HF_ENDPOINT``).
        commit_message: Defaults to a message naming the model kind.
        tolerance: Largest difference accepted between stock and xm_integrations outputs.

    Raises:
        ModelFolderError: not an XMOD model folder, or one holding pickled files or no safetensors weights.
        MissingTokenError: no token (only when uploading).
        ValidationError: stock libraries and xm_integrations disagree; nothing is uploaded.
        UploadError: the Hub failed; nothing is committed, as the commit is a single request.
        RepoIdError: ``repo_id`` is not a valid ``namespace/name`` (checked before anything else,
            dry runs included: the card's snippets would carry it).
    """
    check_repo_id(repo_id)
    folder = read_model_folder(model_dir)
    check_serialization(folder)
    if dry_run_dir is None:
        token = _upload_token(token)
    report = validate_model_folder(folder, tolerance=tolerance)
    options = card_options or CardOptions()
    options = CardOptions(license=options.license, base_model=options.base_model, datasets=options.datasets,
                          tags=options.tags, model_name=options.model_name,
                          eval_results=[*options.eval_results, *eval_results])
    card = render_model_card(folder, repo_id, options)
    files = plan_upload(folder, str(card))
    if dry_run_dir is not None:
        written = write_dry_run(files, dry_run_dir, model_dir=folder.path)
        return PushResult(repo_id, files, report, dry_run_dir=written)

    api = HfApi(endpoint=endpoint, token=token)
    message = commit_message or f"Upload {folder.kind.value} model ({len(folder.languages)} language adapters) with xm-integrations"
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        before = api.repo_info(repo_id, revision=revision, repo_type="model").sha if not create_pr else None
        info = api.create_commit(
            repo_id,
            operations=[file.operation() for file in files],
            commit_message=message,
            commit_description="Validated against sentence-transformers, FlagEmbedding and transformers:\n\n"
                               + report.describe(),
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )
    except _hub_errors() as error:
        where = api.endpoint
        raise UploadError(_redact(f"Upload to {repo_id} at {where} failed, nothing was committed: "
                                  f"{type(error).__name__}: {error}", token)) from None
    # With create_pr, huggingface_hub opens no pull request (pr_url None) when the target already holds
    # exactly these files: it skips the empty commit and returns the branch head.
    changed = info.pr_url is not None if create_pr else info.oid != before
    return PushResult(
        repo_id, files, report, repo_url=str(repo_url), commit_url=info.commit_url if changed else None,
        pr_url=info.pr_url, changed=changed,
    )
