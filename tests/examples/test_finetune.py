"""examples/finetune.py runs end to end on the tiny checkpoints: train, save, evaluate per language, reload."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sentence_transformers import CrossEncoder, MultiVectorEncoder

from tests.paths import REPO_ROOT


def _example():
    spec = importlib.util.spec_from_file_location("finetune_example", REPO_ROOT / "examples" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, extra", [("colbert", []), ("mono", ["--bf16"])])
def test_example_trains_saves_and_evaluates_per_language(kind: str, extra: list[str], tmp_path: Path) -> None:
    table = _example().main(["--kind", kind, "--max-steps", "6", "--output-dir", str(tmp_path / "out"), *extra])
    assert set(table) == {"fr", "de"}
    assert all(0.0 <= value <= 1.0 for scores in table.values() for value in scores.values())
    stock = MultiVectorEncoder if kind == "colbert" else CrossEncoder
    assert stock(str(tmp_path / "out")) is not None  # the saved model loads in the stock class
