"""XMFlagReranker against plain transformers: ``XmodForSequenceClassification(**inputs, lang_ids=...)`` in fp32.

The reference encodes each pair on its own (``tokenizer(query, passage)``), which is what
FlagEmbedding's id-level ``prepare_for_model`` builds, and passes the adapter id explicitly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, XmodForSequenceClassification

pytest.importorskip("FlagEmbedding")

from FlagEmbedding import FlagAutoReranker, FlagReranker  # noqa: E402

from xm_integrations import MissingLanguageError, UnknownLanguageError, XMFlagReranker, resolve_language  # noqa: E402
from xm_integrations.routing import RoutedPair  # noqa: E402
from xm_integrations.testing import build_tiny_mono_xm  # noqa: E402
from xm_integrations.testing.corpus import SAMPLE_PASSAGES, SAMPLE_QUERIES  # noqa: E402

from .test_mono_xm import call_with_timeout, run_in_threads  # noqa: E402

ATOL = 1e-5
MONO_XM_REPO = "antoinelouis/mono-xm"

KNOWN = [
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["fr_XX"][0], "fr_XX"),
    (SAMPLE_QUERIES["de_DE"], SAMPLE_PASSAGES["de_DE"][1], "de_DE"),
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["zh_CN"][0], "zh_CN"),
    (SAMPLE_QUERIES["fr_XX"], SAMPLE_PASSAGES["es_XX"][3], "es_XX"),
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["ru_RU"][0], "ru_RU"),
]
PAIRS = [(query, passage) for query, passage, _ in KNOWN]
KNOWN_LANGUAGES = [language for _, _, language in KNOWN]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


class Reference:
    """Plain transformers, fp32, one pair at a time, explicit ``lang_ids``."""

    def __init__(self, path: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = XmodForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()

    def logits(self, pairs: Sequence[tuple[str, str]], languages: Sequence[str] | str, **tokenizer_kwargs: Any) -> np.ndarray:
        languages = [languages] * len(pairs) if isinstance(languages, str) else languages
        out = []
        for (query, passage), language in zip(pairs, languages):
            inputs = self.tokenizer(query, passage, return_tensors="pt", **tokenizer_kwargs)
            ids = torch.tensor([self.model.config.languages.index(language)])
            with torch.no_grad():
                out.append(self.model(**inputs, lang_ids=ids).logits.item())
        return np.array(out)


@pytest.fixture(scope="module")
def reference(tiny_mono_xm: Path) -> Reference:
    return Reference(tiny_mono_xm)


@pytest.fixture(scope="module")
def reranker(tiny_mono_xm: Path) -> XMFlagReranker:
    """No default language, like the published checkpoint."""
    return XMFlagReranker(str(tiny_mono_xm), devices="cpu")


def assert_adapters_differ(reference: Reference, pairs: Sequence[tuple[str, str]], a: str, b: str) -> None:
    assert np.abs(reference.logits(pairs, a) - reference.logits(pairs, b)).min() > 1e-3


def test_default_language_raw_and_normalized(tiny_mono_xm: Path, reference: Reference) -> None:
    reranker = XMFlagReranker(str(tiny_mono_xm), devices="cpu", language="fr-FR")
    assert reranker.default_language == "fr_XX" and len(reranker.languages) == 81
    expected = reference.logits(PAIRS, "fr_XX")
    assert_adapters_differ(reference, PAIRS, "fr_XX", "en_XX")
    raw = reranker.compute_score(PAIRS)
    assert isinstance(raw, list) and len(raw) == len(PAIRS)
    np.testing.assert_allclose(raw, expected, atol=ATOL)
    np.testing.assert_allclose(reranker.compute_score(PAIRS, normalize=True), sigmoid(expected), atol=ATOL)
    np.testing.assert_allclose(reranker.compute_score(PAIRS[0]), expected[:1], atol=ATOL)  # one pair, as stock


def test_set_default_language_and_checkpoint_default(tiny_mono_xm: Path, tmp_path: Path, reference: Reference) -> None:
    folder = build_tiny_mono_xm(tmp_path / "german", default_language="de_DE")
    reranker = XMFlagReranker(str(folder), devices="cpu")
    assert reranker.default_language == "de_DE"
    np.testing.assert_allclose(reranker.compute_score(PAIRS), reference.logits(PAIRS, "de_DE"), atol=ATOL)
    reranker.set_default_language("Spanish")
    assert reranker.default_language == "es_XX"
    np.testing.assert_allclose(reranker.compute_score(PAIRS), reference.logits(PAIRS, "es_XX"), atol=ATOL)


def test_one_language_per_call(reranker: XMFlagReranker, reference: Reference) -> None:
    assert_adapters_differ(reference, PAIRS, "zh_TW", "zh_CN")
    expected = reference.logits(PAIRS, "zh_TW")
    np.testing.assert_allclose(reranker.compute_score(PAIRS, language="zh-Hant"), expected, atol=ATOL)
    np.testing.assert_allclose(reranker.compute_score(PAIRS, language="zh-Hant", normalize=True), sigmoid(expected),
                               atol=ATOL)
    assert reranker.default_language is None


def test_language_list_interleaving_three_languages(reranker: XMFlagReranker, reference: Reference) -> None:
    pairs = PAIRS * 2
    languages = ["fr", "de", "zh"] * 3 + ["fr"]
    codes = [resolve_language(language) for language in languages]
    expected = reference.logits(pairs, codes)
    assert np.abs(expected - reference.logits(pairs, "fr_XX")).max() > 1e-3
    for batch_size in (3, 128):  # mixed batches, one batch
        scores = reranker.compute_score(pairs, language=languages, batch_size=batch_size)
        np.testing.assert_allclose(scores, expected, atol=ATOL)
    normalized = reranker.compute_score(pairs, language=languages, batch_size=3, normalize=True)
    np.testing.assert_allclose(normalized, sigmoid(expected), atol=ATOL)


def test_auto(reranker: XMFlagReranker, reference: Reference) -> None:
    expected = reference.logits(PAIRS, KNOWN_LANGUAGES)
    assert np.abs(expected - reference.logits(PAIRS, "en_XX")).max() > 1e-3
    np.testing.assert_allclose(reranker.compute_score(PAIRS, language="auto"), expected, atol=ATOL)
    np.testing.assert_allclose(reranker.compute_score(PAIRS, language="auto", normalize=True), sigmoid(expected),
                               atol=ATOL)


def test_model_card_flag_embedding_snippet(hub_cache: Path, reference: Reference) -> None:
    reranker = XMFlagReranker(MONO_XM_REPO)
    reranker.model.set_default_language("fr_FR")
    score = reranker.compute_score(["query", "paragraph"])
    assert reranker.default_language == "fr_XX"
    np.testing.assert_allclose(score, reference.logits([("query", "paragraph")], "fr_XX"), atol=ATOL)
    assert_adapters_differ(reference, [("query", "paragraph")], "fr_XX", "en_XX")


def test_flag_auto_reranker_returns_ours(hub_cache: Path, reference: Reference) -> None:
    reranker = FlagAutoReranker.from_finetuned(MONO_XM_REPO, language="de", devices="cpu")
    assert isinstance(reranker, XMFlagReranker)
    np.testing.assert_allclose(reranker.compute_score(PAIRS), reference.logits(PAIRS, "de_DE"), atol=ATOL)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter (offline), so import order starts from nothing."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_registration_when_flag_embedding_is_imported_first() -> None:
    """Slow (about 15 s): a fresh interpreter imports FlagEmbedding's mapping before ``xm_integrations``.

    The other order (``xm_integrations`` first, as in this test session) is covered by
    ``test_flag_auto_reranker_returns_ours``.
    """
    code = (
        "from FlagEmbedding.inference.reranker.model_mapping import AUTO_RERANKER_MAPPING\n"
        "assert 'mono-xm' not in AUTO_RERANKER_MAPPING\n"
        "import xm_integrations\n"
        "from xm_integrations.flag_reranker import XMFlagReranker\n"
        "assert AUTO_RERANKER_MAPPING['mono-xm'].model_class is XMFlagReranker, AUTO_RERANKER_MAPPING['mono-xm']\n"
        "print('ok')\n"
    )
    result = _fresh_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.slow
def test_registration_when_our_reranker_imports_flag_embedding() -> None:
    """Slow (about 15 s): ``XMFlagReranker`` imported first, so FlagEmbedding's mapping runs while our module is unfinished."""
    code = (
        "from xm_integrations import XMFlagReranker\n"
        "from FlagEmbedding.inference.reranker.model_mapping import AUTO_RERANKER_MAPPING\n"
        "assert AUTO_RERANKER_MAPPING['mono-xm'].model_class is XMFlagReranker, AUTO_RERANKER_MAPPING.get('mono-xm')\n"
        "print('ok')\n"
    )
    result = _fresh_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert "Could not register" not in result.stderr


def test_import_is_cheap_and_flag_embedding_optional() -> None:
    """``import xm_integrations`` imports no FlagEmbedding and works without it (fresh interpreters)."""
    code = (
        "import sys, xm_integrations\n"
        "assert 'FlagEmbedding' not in sys.modules, 'import xm_integrations imported FlagEmbedding'\n"
        "sys.modules['FlagEmbedding'] = None  # as if the optional extra were not installed\n"
        "try:\n"
        "    xm_integrations.XMFlagReranker\n"
        "except ImportError as error:\n"
        "    assert 'xm-integrations[flag]' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# --- Bad input -----------------------------------------------------------------------------------------------


def test_bad_languages(reranker: XMFlagReranker) -> None:
    with pytest.raises(UnknownLanguageError, match="Klingon"):
        reranker.compute_score(PAIRS, language="Klingon")
    with pytest.raises(ValueError, match="language has 2 entries but there are 5 inputs"):
        reranker.compute_score(PAIRS, language=["fr", "de"])
    with pytest.raises(MissingLanguageError, match="language="):
        reranker.compute_score(PAIRS)
    with pytest.raises(TypeError, match="language="):
        XMFlagReranker("unused", default_language="fr")


def test_empty_and_malformed_inputs(reranker: XMFlagReranker, reference: Reference) -> None:
    assert reranker.compute_score([], language="fr") == []
    with pytest.raises(TypeError, match="Input 1 has a passage of type NoneType"):
        reranker.compute_score([("q", "p"), ("q", None)], language="fr")
    with pytest.raises(TypeError, match="Input 2 has a query of type float"):
        reranker.compute_score([("q", "p"), ("q", "p"), (1.5, "p")], language="fr")
    pairs = [("", ""), ("query", ""), ("", "passage")]
    np.testing.assert_allclose(reranker.compute_score(pairs, language="fr"), reference.logits(pairs, "fr_XX"),
                               atol=ATOL)


def test_out_of_range_adapter_ids_are_refused(reranker: XMFlagReranker, reference: Reference) -> None:
    """XMOD gives silently zeroed adapters for an id it lacks; pairs carrying one must fail, never be scored."""
    bad_pairs = [RoutedPair(PAIRS[0], 7), RoutedPair(PAIRS[1], 81)]
    with pytest.raises(IndexError, match=r"\[81\] are out of range.*81 adapters"):
        reranker.compute_score(bad_pairs)
    with pytest.raises(IndexError, match=r"\[-1\] are out of range"):
        reranker.compute_score_single_gpu([RoutedPair(PAIRS[0], -1)])  # what pool workers call
    scores = reranker.compute_score_single_gpu([RoutedPair(PAIRS[0], 8)])
    np.testing.assert_allclose(scores, reference.logits(PAIRS[:1], "de_DE"), atol=ATOL)


def test_threads_with_different_languages_do_not_interfere(reranker: XMFlagReranker, reference: Reference) -> None:
    pairs = PAIRS * 3
    jobs = {"fr": "fr", "mixed": ["zh", "de", "en"] * 5}
    expected = {"fr": reference.logits(pairs, "fr_XX"),
                "mixed": reference.logits(pairs, [resolve_language(x) for x in jobs["mixed"]])}
    assert np.abs(expected["fr"] - expected["mixed"]).max() > 1e-3
    alone = {name: reranker.compute_score(pairs, language=language, batch_size=4) for name, language in jobs.items()}
    for name in jobs:
        np.testing.assert_allclose(alone[name], expected[name], atol=ATOL)
    results = run_in_threads(lambda language: reranker.compute_score(pairs, language=language, batch_size=4), jobs)
    for name in jobs:
        for scores in results[name]:
            assert scores == alone[name]
    assert reranker.default_language is None


def test_long_texts_truncated_as_stock_flag_reranker(tiny_mono_xm: Path, tmp_path: Path, reference: Reference) -> None:
    """The passage is cut so that the pair fits max_length (512); the query keeps up to 3/4 of it."""
    long_passage = " ".join(SAMPLE_PASSAGES["en_XX"]) * 40
    pairs = [("short query", long_passage), PAIRS[0]]
    assert len(reference.tokenizer(long_passage)["input_ids"]) > 1000
    expected = reference.logits(pairs, "de_DE", truncation="only_second", max_length=512)
    ours = XMFlagReranker(str(tiny_mono_xm), devices="cpu", language="de")
    np.testing.assert_allclose(ours.compute_score(pairs), expected, atol=ATOL)
    # Stock FlagReranker on the same weights with de_DE saved as default truncates the same way.
    folder = build_tiny_mono_xm(tmp_path / "de", default_language="de_DE")
    np.testing.assert_allclose(FlagReranker(str(folder), devices="cpu").compute_score(pairs), expected, atol=ATOL)


# --- Several devices -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_cpu_devices(tiny_mono_xm: Path, reference: Reference) -> None:
    """Slow (about 30-60 s on 2 cores): two spawned workers, each importing FlagEmbedding."""
    reranker = XMFlagReranker(str(tiny_mono_xm), devices=["cpu", "cpu"], batch_size=2)
    pairs = PAIRS * 2
    languages = ["fr", "de", "zh", "es", "ru"] * 2
    expected = reference.logits(pairs, [resolve_language(x) for x in languages])
    try:
        began = time.monotonic()
        with pytest.raises(UnknownLanguageError):
            call_with_timeout(lambda: reranker.compute_score(pairs, language="Klingon"), 10)
        with pytest.raises(ValueError, match="2 entries"):
            call_with_timeout(lambda: reranker.compute_score(pairs, language=["fr", "de"]), 10)
        assert time.monotonic() - began < 5 and reranker.pool is None  # refused before any dispatch

        scores = call_with_timeout(lambda: reranker.compute_score(pairs, language=languages), 300)
        np.testing.assert_allclose(scores, expected, atol=ATOL)
        auto = call_with_timeout(lambda: reranker.compute_score(PAIRS, language="auto", normalize=True), 60)
        np.testing.assert_allclose(auto, sigmoid(reference.logits(PAIRS, KNOWN_LANGUAGES)), atol=ATOL)

        # A worker that raises (a tokenizer argument clash) reports it, then keeps serving.
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="return_tensors"):
            call_with_timeout(lambda: reranker.compute_score(pairs, language="fr", return_tensors="pt"), 60)
        assert time.monotonic() - began < 30
        again = call_with_timeout(lambda: reranker.compute_score(pairs, language=languages), 60)
        np.testing.assert_allclose(again, expected, atol=ATOL)

        # Dead workers are noticed at once; the pool is dropped, so the next call would start a fresh one.
        for process in reranker.pool["processes"]:
            process.kill()
            process.join()
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="died"):
            call_with_timeout(lambda: reranker.compute_score(pairs * 4, language="fr"), 60)
        assert time.monotonic() - began < 10 and reranker.pool is None
    finally:
        reranker.stop_self_pool()
