"""colbert-ai's ``HF_ColBERT`` checkpoint layout (``antoinelouis/colbert-xm``), and its validation before a load.

``config.json`` naming ``HF_ColBERT``, ``model.safetensors`` with ``roberta.*`` and ``linear.weight``,
``artifact.metadata`` (colbert-ai's ``ColBERTConfig``: lengths, markers, punctuation) and the
tokenizer; or a sentence-transformers folder saved by ``ColBERTXM.save``. A file that is missing,
corrupt or inconsistent fails the load naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from xm_integrations.errors import CheckpointError, InvalidArgumentError, MissingCheckpointFileError
from xm_integrations.models.checkpoints import (
    RESTORE,
    CheckpointFiles,
    check_tokenizer_files,
    max_input_tokens,
    module_path,
    read_json,
    sentence_transformers_modules,
    weight_shapes,
)
from xm_integrations.models.colbert_xm.tokenization import ColBERTEncoding, colbert_skiplist_ids

__all__ = [
    "COLBERT_AI_DEFAULTS",
    "CheckpointSource",
    "configure_from_colbert_metadata",
    "inspect_colbert_checkpoint",
    "read_encoding",
]

#: colbert-ai 0.2.22's defaults (``colbert/infra/config/settings.py``), used for fields that a
#: checkpoint's ``artifact.metadata`` leaves out or sets to null.
COLBERT_AI_DEFAULTS: dict[str, Any] = {
    "query_maxlen": 32,
    "doc_maxlen": 220,
    "attend_to_mask_tokens": False,
    "mask_punctuation": True,
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
}


@dataclass(frozen=True)
class CheckpointSource:
    """What kind of folder was loaded: colbert-ai's ``HF_ColBERT`` layout, or a sentence-transformers save."""

    kind: Literal["colbert-ai", "sentence-transformers"]
    metadata: dict[str, Any] | None = None


def _check_metadata(metadata: dict[str, Any], path: str) -> None:
    """Refuse ``artifact.metadata`` fields that colbert-ai could not have written."""
    for key in ("query_maxlen", "doc_maxlen"):
        value = metadata.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 3):
            raise CheckpointError(path, f"{key} must be an integer >= 3 (room for <s>, the marker and </s>), got {value!r}")
    value = metadata.get("dim")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CheckpointError(path, f"dim must be a positive integer, got {value!r}")
    for key in ("attend_to_mask_tokens", "mask_punctuation"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, bool):
            raise CheckpointError(path, f"{key} must be true or false, got {value!r}")
    for key in ("query_token_id", "doc_token_id"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise CheckpointError(path, f"{key} must be a token string such as '[unused0]', got {value!r}")


def inspect_colbert_checkpoint(files: CheckpointFiles) -> CheckpointSource:
    """Validate the files a load will read, so that a broken checkpoint fails with the file's name.

    A folder with ``modules.json`` is a sentence-transformers save (ours, or any stock one); a
    ``config.json`` whose architectures name ``HF_ColBERT`` is colbert-ai's layout, which must have
    ``artifact.metadata`` and ``model.safetensors`` holding ``roberta.*`` and ``linear.weight``.
    """
    modules = sentence_transformers_modules(files)
    if modules is not None:
        shapes = {  # every weighted module's header read once (and validated)
            str(entry.get("path") or ""): weight_shapes(files, str(entry.get("path") or ""))
            for entry in modules if entry["type"].rsplit(".", 1)[-1] in ("Transformer", "Dense")
        }
        dense = module_path(modules, "Dense")
        if dense is None:
            raise CheckpointError(
                files.describe("modules.json"),
                "no Dense module (the projection to token vectors): not a multi-vector (ColBERT-XM) model. A "
                "cross-encoder such as Mono-XM loads with MonoXM or XMFlagReranker.",
            )
        if "linear.weight" not in shapes[dense]:
            raise CheckpointError(
                files.find("model.safetensors", dense) or files.describe("model.safetensors", dense),
                "no 'linear.weight' tensor: the projection to token vectors is missing. " + RESTORE,
            )
        check_tokenizer_files(files, module_path(modules, "Transformer") or "")
        return CheckpointSource("sentence-transformers")

    config_path = files.find("config.json")
    if config_path is None:
        raise MissingCheckpointFileError(
            files.describe("config.json"), f"{files.name!r} is neither a colbert-ai checkpoint "
            "(config.json, model.safetensors, artifact.metadata) nor a sentence-transformers folder (modules.json), "
            "or it is not in the local Hugging Face cache."
        )
    config = read_json(config_path, dict, "a transformers config.json")
    architectures = config.get("architectures") or []
    if "HF_ColBERT" not in architectures:
        raise CheckpointError(
            config_path,
            f"architectures is {architectures!r}, not colbert-ai's ['HF_ColBERT']. ColBERTXM loads colbert-ai "
            "checkpoints such as antoinelouis/colbert-xm and folders saved by ColBERTXM.save().",
        )
    metadata_path = files.find("artifact.metadata")
    if metadata_path is None:
        raise MissingCheckpointFileError(
            files.describe("artifact.metadata"), "colbert-ai checkpoints keep query_maxlen, doc_maxlen, "
            "the marker tokens and the punctuation setting there, and guessing them would change every vector. "
            + RESTORE
        )
    metadata = read_json(metadata_path, dict, "colbert-ai writes its ColBERTConfig there as a JSON object")
    _check_metadata(metadata, metadata_path)
    limit = max_input_tokens(SimpleNamespace(**config))
    for key in ("query_maxlen", "doc_maxlen"):
        value = metadata.get(key) or COLBERT_AI_DEFAULTS[key]
        if limit is not None and value > limit:
            raise CheckpointError(
                metadata_path, f"{key}={value} exceeds the {limit} tokens this XMOD model can embed ({config_path})"
            )

    shapes = weight_shapes(files)
    weights_path = files.find("model.safetensors") or files.describe("model.safetensors")
    if "linear.weight" not in shapes:
        raise CheckpointError(weights_path, "no 'linear.weight' tensor: not a colbert-ai HF_ColBERT checkpoint")
    if not any(key.startswith("roberta.") for key in shapes):
        raise CheckpointError(weights_path, "no 'roberta.*' encoder tensors: not a colbert-ai HF_ColBERT checkpoint")
    linear = shapes["linear.weight"]
    if len(linear) != 2 or (metadata.get("dim") is not None and linear[0] != metadata["dim"]):
        raise CheckpointError(
            weights_path,
            f"linear.weight has shape {list(linear)} but {metadata_path} says dim={metadata.get('dim')}",
        )
    check_tokenizer_files(files)
    return CheckpointSource("colbert-ai", metadata)


def configure_from_colbert_metadata(model: Any, metadata: dict[str, Any], transformer: Any, mask: Any) -> None:
    """Express colbert-ai's settings with ``model``'s stock modules, so that ``save`` writes them.

    The markers become one-token prompts (the token colbert-ai's id stands for, ``<unk>`` on
    XLM-R), the query length and mask attention become the ``Transformer``'s fixed query
    expansion, and the skiplist (colbert-ai's punctuation ids plus the pad id) is stored as token
    strings on the ``MultiVectorMask``.
    """
    tokenizer = model.tokenizer
    for role, key in (("query", "query_token_id"), ("document", "doc_token_id")):
        model.prompts[role] = tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(metadata[key]))
    transformer.query_expansion = {
        "strategy": "fixed",
        "attend": bool(metadata["attend_to_mask_tokens"]),
        "length": int(metadata["query_maxlen"]),
    }
    transformer.document_length = int(metadata["doc_maxlen"])
    skiplist = colbert_skiplist_ids(tokenizer) if metadata["mask_punctuation"] else set()
    skiplist.add(tokenizer.pad_token_id)
    mask.skiplist_words = tokenizer.convert_ids_to_tokens(sorted(skiplist))
    mask.resolve_with_tokenizer(tokenizer)

def read_encoding(model: Any, transformer: Any) -> ColBERTEncoding:
    """The tokenization settings, read back from the stock modules (the single source of truth)."""
    tokenizer = model.tokenizer
    expansion = transformer.query_expansion
    if expansion is None or expansion["strategy"] != "fixed":
        raise InvalidArgumentError(
            "ColBERTXM needs the Transformer's query_expansion to be {'strategy': 'fixed', 'length': query_maxlen, "
            f"'attend': ...}} (colbert-ai pads every query to query_maxlen), got {expansion!r}."
        )
    if transformer.document_length is None:
        raise InvalidArgumentError("ColBERTXM needs the Transformer's document_length (colbert-ai's doc_maxlen).")
    mask_id = tokenizer.mask_token_id if expansion.get("token") is None else tokenizer.convert_tokens_to_ids(
        expansion["token"]
    )

    def marker(role: str, default: str) -> int:
        prompt = (model.prompts.get(role) or "").strip() or default
        return int(tokenizer.convert_tokens_to_ids(prompt))

    return ColBERTEncoding(
        query_maxlen=int(expansion["length"]),
        doc_maxlen=int(transformer.document_length),
        attend_to_mask_tokens=bool(expansion["attend"]),
        query_marker_id=marker("query", COLBERT_AI_DEFAULTS["query_token_id"]),
        doc_marker_id=marker("document", COLBERT_AI_DEFAULTS["doc_token_id"]),
        mask_token_id=int(mask_id),
        pad_token_id=int(tokenizer.pad_token_id),
    )
