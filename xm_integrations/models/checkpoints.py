"""Checkpoint files: find them (local folder or hub cache), validate them before loading, and name the file that is wrong.

A checkpoint that cannot work must fail on load, naming the folder and the file, rather than load
and score garbage: transformers fills a missing head with random weights (its MISSING report is the
only hint) and a folder without tokenizer files turns every text into ``<unk>``. The checks read
only JSON files and safetensors headers, never unpickle anything, and go through
:func:`sentence_transformers.util.load_file_path`, so a repo id resolves through the hub cache
exactly as the load that follows will (``HF_HUB_OFFLINE=1`` included).

Used by every model class (:class:`~xm_integrations.MonoXM`, :class:`~xm_integrations.XMFlagReranker`,
:class:`~xm_integrations.ColBERTXM`) and by the conversion and upload tools. Imports no model code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from sentence_transformers.util import load_file_path

from xm_integrations.errors import CheckpointError, MissingCheckpointFileError

__all__ = [
    "TOKENIZER_FILES",
    "CheckpointFiles",
    "check_cross_encoder_checkpoint",
    "check_tokenizer_files",
    "check_transformer_tokenizer",
    "module_path",
    "sentence_transformers_modules",
    "max_input_tokens",
    "read_json",
    "weight_shapes",
]

#: Files that hold an XLM-R tokenizer's vocabulary: the fast ``tokenizer.json`` or the sentencepiece
#: model. Either is enough; without both, transformers builds a tokenizer that maps every text to ``<unk>``.
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "sentencepiece.bpe.model")


def max_input_tokens(config: Any) -> int | None:
    """The longest input, in tokens with the special ones, that an XMOD model can embed.

    XMOD numbers positions as RoBERTa does, from ``pad_token_id + 1``, so of the
    ``max_position_embeddings`` (514) only 512 are usable. sentence-transformers caps inputs at
    ``max_position_embeddings`` itself, which fails with an index error on long inputs whenever the
    tokenizer does not set ``model_max_length`` (the tiny test checkpoints do not).
    """
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    pad = getattr(config, "pad_token_id", None)
    return positions - (pad + 1 if pad is not None else 0)


class CheckpointFiles:
    """Looks files up in a local folder or a Hub repository (through the hub cache when offline)."""

    def __init__(self, name: str, **hub_kwargs: Any) -> None:
        self.name = name
        self.hub_kwargs = hub_kwargs

    @classmethod
    def from_model_kwargs(cls, name: str | os.PathLike, kwargs: dict[str, Any]) -> CheckpointFiles:
        """The files a sentence-transformers model constructor will read, given its keyword arguments."""
        return cls(
            str(name),
            token=kwargs.get("token"),
            cache_folder=kwargs.get("cache_folder") or os.getenv("SENTENCE_TRANSFORMERS_HOME"),
            revision=kwargs.get("revision"),
            local_files_only=kwargs.get("local_files_only", False),
        )

    def find(self, filename: str, subfolder: str = "") -> str | None:
        return load_file_path(self.name, filename, subfolder=subfolder, **self.hub_kwargs)

    def describe(self, filename: str, subfolder: str = "") -> str:
        """The name to use in an error about a file that may not exist."""
        return str(Path(self.name, subfolder, filename))


#: The fix for a checkpoint file that is missing, unreadable or corrupt, appended to those errors.
RESTORE = "Restore it from the original checkpoint (download the model again, or copy the file back from its source)."


def read_json(path: str, expected: type, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"not valid JSON ({error}); {what}. {RESTORE}") from None
    if not isinstance(value, expected):
        raise CheckpointError(
            path, f"expected a JSON {expected.__name__}, got {type(value).__name__}; {what}. {RESTORE}"
        )
    return value


def _safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header; the header and file size are validated."""
    try:
        with safe_open(path, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            path, f"unreadable safetensors weights ({error}); the file is corrupt or truncated. {RESTORE}"
        ) from None


def weight_shapes(files: CheckpointFiles, subfolder: str = "") -> dict[str, tuple[int, ...]]:
    """Shapes of a module's weights: ``model.safetensors``, or the shards of its index.

    Pickled ``pytorch_model.bin`` weights are refused rather than unpickled.
    """
    single = files.find("model.safetensors", subfolder)
    if single is not None:
        return _safetensors_shapes(single)
    index_path = files.find("model.safetensors.index.json", subfolder)
    if index_path is not None:
        index = read_json(index_path, dict, "a sharded safetensors index")
        shapes: dict[str, tuple[int, ...]] = {}
        for shard in sorted(set((index.get("weight_map") or {}).values())):
            shard_path = files.find(shard, subfolder)
            if shard_path is None:
                raise MissingCheckpointFileError(
                    files.describe(shard, subfolder), f"listed in {index_path}. {RESTORE}"
                )
            shapes.update(_safetensors_shapes(shard_path))
        return shapes
    hint = ""
    if files.find("pytorch_model.bin", subfolder) is not None:
        hint = (
            " Only pytorch_model.bin is there: xm_integrations does not unpickle weights. Convert it once in a trusted "
            "environment (safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'))."
        )
    raise MissingCheckpointFileError(
        files.describe("model.safetensors", subfolder), f"no model weights.{hint or ' ' + RESTORE}"
    )


def check_tokenizer_files(files: CheckpointFiles, subfolder: str = "") -> None:
    """Refuse a checkpoint without its tokenizer's vocabulary (see :data:`TOKENIZER_FILES`).

    Raises:
        MissingCheckpointFileError: neither file is there; the message names the folder.
    """
    if any(files.find(name, subfolder) is not None for name in TOKENIZER_FILES):
        return
    folder = files.describe("", subfolder).rstrip("/")
    raise MissingCheckpointFileError(
        files.describe(TOKENIZER_FILES[0], subfolder),
        f"{folder} has no tokenizer vocabulary ({' or '.join(TOKENIZER_FILES)}), so every text would become <unk>. "
        "Copy the tokenizer files from the original checkpoint, or save the tokenizer there "
        "(tokenizer.save_pretrained(folder)).",
    )


def check_transformer_tokenizer(files: CheckpointFiles) -> None:
    """:func:`check_tokenizer_files` where the checkpoint keeps its tokenizer: the ``Transformer``
    module's folder of a sentence-transformers save, else the root."""
    modules = sentence_transformers_modules(files)
    check_tokenizer_files(files, (module_path(modules, "Transformer") or "") if modules is not None else "")


def sentence_transformers_modules(files: CheckpointFiles) -> list[dict[str, Any]] | None:
    """The entries of a sentence-transformers ``modules.json``, checked for their form; ``None`` without one."""
    modules_path = files.find("modules.json")
    if modules_path is None:
        return None
    modules = read_json(modules_path, list, "a sentence-transformers modules.json lists the modules")
    for entry in modules:
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise CheckpointError(modules_path, f"every entry needs a 'type' and a 'path', got {entry!r}")
    return modules


def module_path(modules: list[dict[str, Any]], class_name: str) -> str | None:
    """The folder of the first module of ``class_name`` (``""`` is the root), ``None`` if there is none."""
    for entry in modules:
        if entry["type"].rsplit(".", 1)[-1] == class_name:
            return str(entry.get("path") or "")
    return None


def check_cross_encoder_checkpoint(files: CheckpointFiles, owner: str) -> None:
    """Refuse, before loading, a checkpoint that a cross-encoder (``owner``) cannot score with.

    What is checked: it is not a multi-vector (ColBERT-XM) checkpoint, its weights are safetensors
    and hold a ``classifier.*`` head (transformers would otherwise initialise one at random and
    every score would be noise), and its tokenizer files are there.

    Raises:
        CheckpointError: a multi-vector checkpoint, or weights without a classification head.
        MissingCheckpointFileError: ``config.json``, the weights or the tokenizer files are missing.
    """
    modules = sentence_transformers_modules(files)
    subfolder = ""
    if modules is not None:
        multi_vector = {"Dense", "MultiVectorMask"} & {entry["type"].rsplit(".", 1)[-1] for entry in modules}
        if multi_vector:
            raise CheckpointError(
                files.describe("modules.json"),
                f"a multi-vector (ColBERT-XM) model ({', '.join(sorted(multi_vector))} modules), not a cross-encoder: "
                f"{owner} needs a reranker such as antoinelouis/mono-xm. Load this one with ColBERTXM "
                "(or XMColBERTReranker to rerank with it).",
            )
        subfolder = module_path(modules, "Transformer") or ""
    config_path = files.find("config.json", subfolder)
    if config_path is None:
        raise MissingCheckpointFileError(
            files.describe("config.json", subfolder),
            f"{files.name!r} is not a transformers checkpoint, or it is not in the local Hugging Face cache.",
        )
    config = read_json(config_path, dict, "a transformers config.json")
    architectures = config.get("architectures") or []
    if "HF_ColBERT" in architectures or files.find("artifact.metadata", subfolder) is not None:
        raise CheckpointError(
            config_path,
            f"a colbert-ai (ColBERT-XM) retriever, not a cross-encoder: {owner} would score with a randomly "
            "initialised classification head. Load it with ColBERTXM (or XMColBERTReranker to rerank with it).",
        )
    shapes = weight_shapes(files, subfolder)
    if not any(key.startswith("classifier.") for key in shapes):
        weights = files.find("model.safetensors", subfolder) or files.describe("model.safetensors", subfolder)
        raise CheckpointError(
            weights,
            f"no 'classifier.*' tensors: this checkpoint has no sequence-classification head, so {owner} would "
            "score with a randomly initialised one. Use a checkpoint fine-tuned for reranking (such as "
            "antoinelouis/mono-xm), or train the head first.",
        )
    check_tokenizer_files(files, subfolder)
