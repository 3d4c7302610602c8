"""Fixtures for the hub tests: the tiny checkpoints converted for publication, and a generic XMOD encoder.

Imported by the ``test_hub_*`` modules (pytest picks up fixtures from a test module's namespace).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xm_integrations.hub import convert_model

TOKEN = "hf_test_Zq8v3Lk2Pw9Xr4Tn7Bd1"


@pytest.fixture(scope="session")
def mono_xm_fr(tiny_mono_xm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Mono-XM saved with default language fr_XX (what gets published)."""
    return convert_model(tiny_mono_xm, tmp_path_factory.mktemp("converted") / "mono-xm-fr", language="fr").output_dir


@pytest.fixture(scope="session")
def colbert_xm_fr(tiny_colbert_xm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ColBERT-XM converted to the sentence-transformers layout, default language fr_XX."""
    return convert_model(tiny_colbert_xm, tmp_path_factory.mktemp("converted") / "colbert-xm-fr",
                         language="fr").output_dir


@pytest.fixture(scope="session")
def xmod_encoder(tiny_mono_xm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain XMOD encoder (no task head) with default language de_DE: the generic card's case."""
    from transformers import AutoTokenizer, XmodModel

    path = tmp_path_factory.mktemp("xmod-encoder")
    XmodModel.from_pretrained(tiny_mono_xm, default_language="de_DE").save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_mono_xm).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def xmod_classifier(tiny_mono_xm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XMOD classifier with three labels (not a reranker): the generic card's other case."""
    import torch
    from transformers import AutoTokenizer, XmodForSequenceClassification

    path = tmp_path_factory.mktemp("xmod-classifier")
    torch.manual_seed(0)
    model = XmodForSequenceClassification.from_pretrained(
        tiny_mono_xm, num_labels=3, ignore_mismatched_sizes=True, default_language="fr_XX")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_mono_xm).save_pretrained(path)
    return path


#: A few adapters (two scripts of Chinese, Arabic): loading 81 adapters dominates the tiny models' cost.
SMALL_LANGUAGES = ("en_XX", "fr_XX", "de_DE", "zh_CN", "zh_TW", "ar_AR")


@pytest.fixture(scope="session")
def mono_xm_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Mono-XM with six adapters and default language fr_XX, for tests of upload mechanics."""
    from xm_integrations.testing import build_tiny_mono_xm

    return build_tiny_mono_xm(tmp_path_factory.mktemp("mono-xm-small"), languages=SMALL_LANGUAGES,
                              default_language="fr_XX")


_REPORTS: dict = {}


@pytest.fixture
def validate_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate each folder once per session in upload-mechanics tests (validation is tested on its own).

    The fixtures' folders never change (the tests assert it), so a report stays true for them.
    """
    import xm_integrations.hub.upload as upload

    real = upload.validate_model_folder

    def memoized(folder, **kwargs):
        key = (str(folder.path), tuple(sorted(kwargs.items())))
        if key not in _REPORTS:
            _REPORTS[key] = real(folder, **kwargs)
        return _REPORTS[key]

    monkeypatch.setattr(upload, "validate_model_folder", memoized)
