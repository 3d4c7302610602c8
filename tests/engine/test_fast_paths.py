"""The fast paths that the model classes take by default, against plain transformers with explicit ``lang_ids``.

``MonoXM`` takes :func:`xm_integrations.engine.pipeline.score_pairs` by default on every device; on
CPU it runs in float32, where it must give plain transformers' scores (the reference model is loaded
fresh, with transformers' own adapter dispatch). The arguments that the fast path cannot honour
must fall back to the stock path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.models.test_mono_xm import KNOWN_LANGUAGES, PAIRS, Reference, assert_adapters_differ
from xm_integrations import MonoXM
from xm_integrations.xmod.adapters import _FastLangAdapter

ATOL = 1e-5
MIXED = ["fr_XX", "de_DE", "zh_TW", "fr_XX", "en_XX", "de_DE"]


@pytest.fixture(scope="module")
def reference(tiny_mono_xm: Path) -> Reference:
    return Reference(tiny_mono_xm)


@pytest.fixture(scope="module")
def fast(tiny_mono_xm: Path) -> MonoXM:
    return MonoXM(str(tiny_mono_xm), device="cpu", fast_inference=True, language="fr")


def test_fast_adapters_are_installed_by_default(tiny_mono_xm: Path) -> None:
    model = MonoXM(str(tiny_mono_xm), device="cpu")
    layers = [m for m in model.modules() if hasattr(m, "adapter_modules")]
    assert layers and all(isinstance(m.__dict__.get("lang_adapter"), _FastLangAdapter) for m in layers)
    # The fast path is the default on every device (it measured 1.8-2.9x the stock batching on CPU).
    assert model.fast_inference is True
    assert model._takes_fast_path({}) is True
    assert model._takes_fast_path({"device": "cuda"}) is True


def test_fast_path_matches_transformers_for_mixed_languages(fast: MonoXM, reference: Reference) -> None:
    assert_adapters_differ(reference, PAIRS, "fr_XX", "de_DE")
    np.testing.assert_allclose(fast.predict(PAIRS, language=MIXED), reference.scores(PAIRS, MIXED), atol=ATOL)
    np.testing.assert_allclose(fast.predict(PAIRS), reference.scores(PAIRS, "fr_XX"), atol=ATOL)
    np.testing.assert_allclose(fast.predict(PAIRS, language="auto"), reference.scores(PAIRS, KNOWN_LANGUAGES),
                               atol=ATOL)


def test_fast_path_keeps_predict_outputs(fast: MonoXM, reference: Reference) -> None:
    logits = fast.predict(PAIRS, language=MIXED, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    assert isinstance(logits, torch.Tensor) and logits.shape == (len(PAIRS),)
    np.testing.assert_allclose(logits.numpy(), reference.logits(PAIRS, MIXED), atol=ATOL)
    single = fast.predict(PAIRS[0], language="de")
    assert np.ndim(single) == 0
    np.testing.assert_allclose(single, reference.scores(PAIRS[:1], "de_DE")[0], atol=ATOL)
    as_list = fast.predict(PAIRS[:2], convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 2
    assert len(fast.predict([])) == 0
    with pytest.raises(ValueError, match="batch_size"):
        fast.predict(PAIRS, batch_size=0)


def test_fast_path_long_inputs_truncate_like_the_stock_path(fast: MonoXM, reference: Reference) -> None:
    pairs = [("question " * 300, "passage " * 400), ("q", "mot " * 1000)]
    np.testing.assert_allclose(fast.predict(pairs, language="fr"), reference.scores(pairs, "fr_XX"), atol=ATOL)


def test_rank_takes_the_fast_path(fast: MonoXM, reference: Reference, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = MonoXM._predict_fast
    monkeypatch.setattr(MonoXM, "_predict_fast", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    query, passages = PAIRS[0][0], [passage for _, passage in PAIRS]
    ranked = fast.rank(query, passages, language=MIXED)
    assert calls
    expected = reference.scores([(query, p) for p in passages], MIXED)
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-expected))
    np.testing.assert_allclose([r["score"] for r in ranked], np.sort(expected)[::-1], atol=ATOL)


@pytest.mark.parametrize("kwargs", [{"prompt": "instruction: "}, {"pool": {"processes": []}}, {"device": ["cpu"]}])
def test_arguments_the_fast_path_cannot_honour_keep_the_stock_path(fast: MonoXM, kwargs: dict) -> None:
    assert fast._takes_fast_path(kwargs) is False


def test_fast_inference_false_never_takes_it(tiny_mono_xm: Path, reference: Reference) -> None:
    model = MonoXM(str(tiny_mono_xm), device="cpu", fast_inference=False)
    assert model._takes_fast_path({"device": "cuda"}) is False
    np.testing.assert_allclose(model.predict(PAIRS, language=MIXED), reference.scores(PAIRS, MIXED), atol=ATOL)
