"""Test-wide setup: no network, a private hub cache holding the tiny checkpoints under their real repo ids.

The environment is set before anything imports huggingface_hub, which reads it once at import time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HUB_CACHE = Path(tempfile.mkdtemp(prefix="xm-hub-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(_HUB_CACHE)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from xm_integrations.testing import build_tiny_colbert_xm, build_tiny_mono_xm, populate_hub_cache  # noqa: E402

MONO_XM_REPO = "antoinelouis/mono-xm"
COLBERT_XM_REPO = "antoinelouis/colbert-xm"


@pytest.fixture(scope="session")
def tiny_mono_xm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Mono-XM checkpoint folder (no default language, like the published one)."""
    return build_tiny_mono_xm(tmp_path_factory.mktemp("mono-xm"))


@pytest.fixture(scope="session")
def tiny_colbert_xm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ColBERT-XM checkpoint folder in colbert-ai's HF_ColBERT layout."""
    return build_tiny_colbert_xm(tmp_path_factory.mktemp("colbert-xm"))


@pytest.fixture(scope="session")
def hub_cache(tiny_mono_xm: Path, tiny_colbert_xm: Path) -> Path:
    """The offline hub cache, with the tiny checkpoints filed under the real repo ids."""
    populate_hub_cache(tiny_mono_xm, MONO_XM_REPO, _HUB_CACHE)
    populate_hub_cache(tiny_colbert_xm, COLBERT_XM_REPO, _HUB_CACHE)
    return _HUB_CACHE
