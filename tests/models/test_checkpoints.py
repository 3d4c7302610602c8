"""Checkpoints that cannot work fail on load, naming the folder and the file, for local folders and hub-cache repo ids.

The reference for "cannot work" is what stock loading does with them: transformers fills a missing
classification head with random weights (two loads then disagree), and without tokenizer files the
tokenizer maps text to ``<unk>`` only. Each broken folder is first shown to load in the stock
library, so the test would fail if our check were dropped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import _HUB_CACHE
from xm_integrations import ColBERTXM, MonoXM, XMIntegrationsError
from xm_integrations.errors import CheckpointError, MissingCheckpointFileError
from xm_integrations.testing import populate_hub_cache


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def _without_tokenizer(folder: Path, target: Path) -> Path:
    copy = _copy(folder, target)
    for name in ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "special_tokens_map.json"):
        (copy / name).unlink(missing_ok=True)
    return copy


def _without_head(tiny_mono_xm: Path, target: Path) -> Path:
    copy = _copy(tiny_mono_xm, target)
    tensors = load_file(copy / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, copy / "model.safetensors",
              metadata={"format": "pt"})
    return copy


def test_stock_loaders_accept_the_broken_folders(tiny_mono_xm: Path, tmp_path: Path) -> None:
    """Why the checks exist: stock loading raises nothing and gives meaningless models."""
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer

    headless = _without_head(tiny_mono_xm, tmp_path / "headless")
    first = CrossEncoder(str(headless)).model.classifier.out_proj.weight
    second = CrossEncoder(str(headless)).model.classifier.out_proj.weight
    assert not torch.equal(first, second)  # a random head on every load
    bare = _without_tokenizer(tiny_mono_xm, tmp_path / "bare")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(bare))
    except Exception:  # noqa: BLE001 - some transformers versions refuse; then stock is not silent
        return
    ids = tokenizer("La tour Eiffel", add_special_tokens=False)["input_ids"]
    assert set(ids) <= {tokenizer.unk_token_id}


@pytest.mark.parametrize("loader", ["MonoXM", "XMFlagReranker"])
def test_cross_encoders_refuse_a_folder_without_tokenizer(loader: str, tiny_mono_xm: Path, tmp_path: Path) -> None:
    bare = _without_tokenizer(tiny_mono_xm, tmp_path / "bare")
    with pytest.raises(MissingCheckpointFileError, match=rf"{bare}.*no tokenizer vocabulary.*tokenizer.json") as error:
        _load(loader, str(bare))
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, XMIntegrationsError)


@pytest.mark.parametrize("loader", ["MonoXM", "XMFlagReranker"])
def test_cross_encoders_refuse_a_checkpoint_without_head(loader: str, tiny_mono_xm: Path, tmp_path: Path) -> None:
    headless = _without_head(tiny_mono_xm, tmp_path / "headless")
    with pytest.raises(CheckpointError, match=r"no 'classifier\.\*' tensors.*randomly initialised") as error:
        _load(loader, str(headless))
    assert error.value.file == str(headless / "model.safetensors")


@pytest.mark.parametrize("loader", ["MonoXM", "XMFlagReranker"])
def test_cross_encoders_refuse_colbert_checkpoints(loader: str, tiny_colbert_xm: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="colbert-ai .*retriever, not a cross-encoder.*ColBERTXM"):
        _load(loader, str(tiny_colbert_xm))
    saved = tmp_path / "colbert-st"
    ColBERTXM(str(tiny_colbert_xm), language="fr").save(str(saved))
    with pytest.raises(CheckpointError, match="multi-vector .*not a cross-encoder"):
        _load(loader, str(saved))


def test_colbert_refuses_what_it_cannot_encode_with(tiny_mono_xm: Path, tiny_colbert_xm: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingCheckpointFileError, match="no tokenizer vocabulary"):
        ColBERTXM(str(_without_tokenizer(tiny_colbert_xm, tmp_path / "bare")))
    saved = tmp_path / "colbert-st"
    ColBERTXM(str(tiny_colbert_xm), language="fr").save(str(saved))
    with pytest.raises(MissingCheckpointFileError, match="no tokenizer vocabulary"):
        ColBERTXM(str(_without_tokenizer(saved, tmp_path / "bare-st")))
    projectionless = _copy(saved, tmp_path / "projectionless")
    save_file({"other": torch.zeros(2, 2)}, projectionless / "1_Dense" / "model.safetensors")
    with pytest.raises(CheckpointError, match="no 'linear.weight' tensor"):
        ColBERTXM(str(projectionless))
    mono_saved = tmp_path / "mono-st"
    MonoXM(str(tiny_mono_xm), language="fr").save(str(mono_saved))
    with pytest.raises(CheckpointError, match="no Dense module.*MonoXM"):
        ColBERTXM(str(mono_saved))


def test_repo_ids_in_the_hub_cache_are_checked_too(tiny_mono_xm: Path, tiny_colbert_xm: Path, tmp_path: Path) -> None:
    populate_hub_cache(_without_tokenizer(tiny_mono_xm, tmp_path / "bare"), "broken/mono-bare", _HUB_CACHE)
    populate_hub_cache(_without_head(tiny_mono_xm, tmp_path / "headless"), "broken/mono-headless", _HUB_CACHE)
    populate_hub_cache(tiny_colbert_xm, "broken/colbert-as-mono", _HUB_CACHE)
    with pytest.raises(MissingCheckpointFileError, match="broken/mono-bare.*no tokenizer vocabulary"):
        MonoXM("broken/mono-bare")
    with pytest.raises(CheckpointError, match="no 'classifier"):
        _load("XMFlagReranker", "broken/mono-headless")
    with pytest.raises(CheckpointError, match="not a cross-encoder"):
        MonoXM("broken/colbert-as-mono")
    populate_hub_cache(_without_tokenizer(tiny_colbert_xm, tmp_path / "cbare"), "broken/colbert-bare", _HUB_CACHE)
    with pytest.raises(MissingCheckpointFileError, match="broken/colbert-bare.*no tokenizer vocabulary"):
        ColBERTXM("broken/colbert-bare")


def test_convert_and_push_refuse_broken_folders(tiny_mono_xm: Path, tmp_path: Path) -> None:
    from xm_integrations.hub import convert_model
    from xm_integrations.hub.validate import validate_model_folder

    bare = _without_tokenizer(tiny_mono_xm, tmp_path / "bare")
    out = tmp_path / "out"
    with pytest.raises(MissingCheckpointFileError):
        convert_model(bare, out, language="fr")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bare"]  # no partial folder
    headless = _without_head(tiny_mono_xm, tmp_path / "headless")
    with pytest.raises(CheckpointError, match="no 'classifier"):
        convert_model(headless, out, language="fr")
    # push validates before any request: a folder with a default language but no tokenizer is refused
    saved = tmp_path / "saved"
    MonoXM(str(tiny_mono_xm), language="fr").save(str(saved))
    bare_saved = _without_tokenizer(saved, tmp_path / "bare-saved")
    with pytest.raises(MissingCheckpointFileError, match="no tokenizer vocabulary"):
        validate_model_folder(bare_saved)


def test_errors_pickle_with_their_fields() -> None:
    """Errors raised in pool workers are pickled back to the caller."""
    import pickle

    from xm_integrations.errors import UnknownLanguageError

    error = pickle.loads(pickle.dumps(MissingCheckpointFileError("m/tokenizer.json", "gone")))
    assert isinstance(error, FileNotFoundError) and error.file == "m/tokenizer.json" and str(error) == (
        "m/tokenizer.json is missing: gone")
    language = pickle.loads(pickle.dumps(UnknownLanguageError("xx", ["fr_XX"], ["fr_XX"], "unknown")))
    assert language.suggestions == ("fr_XX",) and "Closest: fr_XX" in str(language)


def _load(loader: str, name: str):
    if loader == "MonoXM":
        return MonoXM(name)
    from xm_integrations import XMFlagReranker

    return XMFlagReranker(name, devices="cpu")
