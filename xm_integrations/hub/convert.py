"""Turn a checkpoint into the folder that gets published: stock-loadable, with its default language saved.

* A colbert-ai ``HF_ColBERT`` checkpoint (ColBERT-XM as on the Hub) becomes the sentence-transformers
  multi-vector folder that :meth:`ColBERTXM.save <xm_integrations.ColBERTXM.save>` writes: every
  adapter, the default language, the query/document lengths, the markers and the skiplist are kept,
  and a stock ``MultiVectorEncoder`` loading it gives colbert-ai's vectors.
* A Mono-XM checkpoint needs no conversion, only a ``default_language`` in ``config.json`` so that
  stock ``CrossEncoder``/``FlagReranker`` work; it is re-saved with :class:`~xm_integrations.MonoXM`.

After saving, the output is loaded with the stock library and compared with our model on the
*source*, in several languages; a difference aborts the conversion and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xm_integrations.errors import InvalidArgumentError, MissingLanguageError, OutputExistsError
from xm_integrations.hub.model_folder import ModelFolder, ModelFolderError, ModelKind, read_model_folder
from xm_integrations.hub.validate import DEFAULT_TOLERANCE, ValidationError, ValidationReport, validate_model_folder

__all__ = ["ConversionResult", "convert_model", "resolve_source"]


@dataclass
class ConversionResult:
    """The converted folder, what it was converted from, and the checks run on it."""

    output_dir: Path
    source: str
    kind: ModelKind
    default_language: str
    report: ValidationReport


def resolve_source(source: str | Path, revision: str | None = None) -> Path:
    """A local folder for ``source``: the folder itself, or the snapshot of a Hub repo id (downloaded or cached).

    Raises:
        ModelFolderError: neither a folder nor a repo that can be fetched.
    """
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(source), revision=revision))
    except (HFValidationError, RepositoryNotFoundError, LocalEntryNotFoundError) as error:
        raise ModelFolderError(
            f"{source!r} is neither a local folder nor a Hub repo that can be fetched ({type(error).__name__}). "
            "Pass a checkpoint folder or a repo id such as antoinelouis/colbert-xm (offline, it must be in the hub cache)."
        ) from None


def _default_language(folder: ModelFolder, language: str | None) -> str | None:
    if language is not None:
        return language
    return folder.default_language


def convert_model(
    source: str | Path,
    output_dir: str | Path,
    *,
    language: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ConversionResult:
    """Convert ``source`` (a folder or repo id) into ``output_dir``, ready for :func:`push_to_hub`.

    Args:
        source: A colbert-ai ``HF_ColBERT`` checkpoint, a Mono-XM checkpoint, or an already converted
            ColBERT-XM folder (to change its default language).
        output_dir: Created; must not exist or be empty unless ``overwrite``.
        language: The default adapter to save, in any spelling (``fr``, ``French``, ``fr_XX``).
            Required when the source has none: stock loaders cannot run an XMOD model without one.
        revision: The Hub revision when ``source`` is a repo id.
        overwrite: Replace a non-empty ``output_dir``.
        tolerance: Largest difference accepted between our model on the source and the stock
            library on the output.

    Raises:
        ModelFolderError: not a checkpoint this can convert.
        MissingLanguageError: no default language given or saved (a ``ValueError``).
        CheckpointError: the source cannot work (no tokenizer files, no head, a corrupt file).
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        ValidationError: the output does not reproduce the source; nothing is written.
    """
    local = resolve_source(source, revision)
    folder = read_model_folder(local)
    if folder.kind is ModelKind.XMOD:
        raise ModelFolderError(
            f"{source} is an XMOD model that is neither ColBERT-XM nor Mono-XM; it needs no conversion. Set its "
            "default language with transformers (model.set_default_language(code); model.save_pretrained(out))."
        )
    language = _default_language(folder, language)
    if language is None:
        raise MissingLanguageError(
            f"{source} has no default_language; pass --language (e.g. --language fr): stock loaders cannot run an "
            "XMOD model without one. Other languages stay available per call."
        )
    output_dir = Path(output_dir).absolute()
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{output_dir} is not empty; choose another folder or pass --overwrite.")
    if output_dir.resolve() == local.resolve():
        raise InvalidArgumentError("The output folder is the source folder; write the conversion elsewhere.")

    model = _load_ours(folder, language)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        model.save_pretrained(str(staging))
        readme = staging / "README.md"
        if readme.exists():  # sentence-transformers' generated card; push_to_hub renders ours
            readme.unlink()
        # Stock libraries on the output against our model loaded from the *source*.
        report = validate_model_folder(staging, tolerance=tolerance, raise_on_failure=False, ours=model)
        if not report.passed:
            raise ValidationError(report, "The converted folder does not reproduce the source; nothing was written. "
                                          "Please report this with the source checkpoint.")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.folder = output_dir
    return ConversionResult(output_dir, str(source), read_model_folder(output_dir).kind, model.default_language, report)


def _load_ours(folder: ModelFolder, language: str):
    if folder.kind is ModelKind.MONO_XM:
        from xm_integrations.models.mono_xm import MonoXM

        return MonoXM(str(folder.path), language=language)
    from xm_integrations.models.colbert_xm.model import ColBERTXM

    return ColBERTXM(str(folder.path), language=language)
