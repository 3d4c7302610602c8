"""examples/finetune.py runs end to end on the tiny checkpoints: train, save, evaluate per language, reload."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from sentence_transformers import CrossEncoder, MultiVectorEncoder

from tests.paths import REPO_ROOT
from xm_integrations import ColBERTXM, MonoXM


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
    saved = str(tmp_path / "out")
    if kind == "colbert":  # the saved model loads in the stock class and gives our vectors
        ours = ColBERTXM(saved).encode_document(["Der Eiffelturm"])
        stock = MultiVectorEncoder(saved).encode_document(["Der Eiffelturm"])
        torch.testing.assert_close(stock[0], ours[0], rtol=1e-5, atol=1e-5)
    else:
        pair = ("Wann?", "Der Eiffelturm wurde 1889 gebaut.")
        assert CrossEncoder(saved).predict([pair])[0] == pytest.approx(MonoXM(saved).predict([pair])[0], abs=1e-5)
