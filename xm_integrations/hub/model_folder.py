"""What kind of XMOD model a local folder holds, read from its files without loading any weights.

Conversion, validation, model cards and upload all branch on this: a sentence-transformers
multi-vector folder (ColBERT-XM as :class:`~xm_integrations.ColBERTXM` saves it), a cross-encoder
(Mono-XM), a raw colbert-ai ``HF_ColBERT`` checkpoint (which must be converted before upload), or
any other XMOD checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from xm_integrations.errors import ModelFolderError

__all__ = ["ModelFolder", "ModelFolderError", "ModelKind", "read_model_folder"]


class ModelKind(str, Enum):
    """The layouts this package knows how to validate, describe and upload."""

    COLBERT_XM = "colbert-xm"
    """A sentence-transformers ``MultiVectorEncoder`` folder over an XMOD encoder (what ``ColBERTXM.save`` writes)."""
    COLBERT_AI = "colbert-ai"
    """A colbert-ai ``HF_ColBERT`` checkpoint (``artifact.metadata``); convert it before uploading."""
    MONO_XM = "mono-xm"
    """An XMOD sequence classifier with one output: a cross-encoder reranker."""
    XMOD = "xmod"
    """Any other XMOD checkpoint."""


@dataclass(frozen=True)
class ModelFolder:
    """A model folder and what its configuration says.

    Attributes:
        path: The folder.
        kind: Its layout.
        languages: The adapter codes (``config.languages``), in adapter-index order.
        default_language: ``config.default_language`` (``None`` when unset).
        config: The parsed ``config.json``.
        sentence_transformers_type: ``model_type`` of ``config_sentence_transformers.json``, if any.
    """

    path: Path
    kind: ModelKind
    languages: tuple[str, ...]
    default_language: str | None
    config: dict[str, Any]
    sentence_transformers_type: str | None = None

    @property
    def files(self) -> list[Path]:
        """Every file below the folder, relative and sorted, skipping VCS and cache folders."""
        return sorted(
            file.relative_to(self.path) for file in self.path.rglob("*")
            if file.is_file() and not _is_ignored(file.relative_to(self.path))
        )


_IGNORED_PARTS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints", ".huggingface"}


def _is_ignored(relative: Path) -> bool:
    return any(part in _IGNORED_PARTS for part in relative.parts) or relative.name == ".DS_Store"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelFolderError(f"{path} is not valid JSON ({error}); re-save the model.") from None
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path} holds {type(value).__name__}, expected a JSON object; re-save the model.")
    return value


def read_model_folder(path: str | Path) -> ModelFolder:
    """Classify a local model folder.

    Raises:
        ModelFolderError: the folder does not exist, has no ``config.json``, or is not an XMOD model.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path} is not a folder. Pass the folder a model was saved to (save_pretrained).")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"{path} has no config.json, so it is not a saved transformers/sentence-transformers model.")
    config = _read_json(config_file)
    if config.get("model_type") != "xmod":
        raise ModelFolderError(
            f"{config_file} says model_type {config.get('model_type')!r}; this tool handles XMOD models "
            "(model_type 'xmod') such as ColBERT-XM and Mono-XM."
        )
    languages = tuple(config.get("languages") or ())
    if not languages:
        raise ModelFolderError(f"{config_file} lists no adapter in 'languages'; an XMOD checkpoint needs at least one.")
    st_config = path / "config_sentence_transformers.json"
    st_type = _read_json(st_config).get("model_type") if st_config.is_file() else None
    architectures = config.get("architectures") or []
    if st_type == "MultiVectorEncoder":  # modules.json wins over a leftover artifact.metadata, as in sentence-transformers
        kind = ModelKind.COLBERT_XM
    elif (path / "artifact.metadata").is_file() or "HF_ColBERT" in architectures:
        kind = ModelKind.COLBERT_AI
    elif any(arch.endswith("ForSequenceClassification") for arch in architectures) and _num_labels(config) == 1:
        kind = ModelKind.MONO_XM
    else:
        kind = ModelKind.XMOD
    return ModelFolder(path=path, kind=kind, languages=languages, default_language=config.get("default_language"),
                       config=config, sentence_transformers_type=st_type)


def _num_labels(config: dict[str, Any]) -> int:
    if "num_labels" in config:
        return int(config["num_labels"])
    return len(config.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"})
