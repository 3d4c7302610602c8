"""XMFlagReranker against plain transformers: ``XmodForSequenceClassification(**inputs, lang_ids=...)`` in fp32.

The reference encodes each pair on its own (``tokenizer(query, passage)``), which is what
FlagEmbedding's id-level ``prepare_for_model`` builds, and passes the adapter id explicitly.
:meth:`Reference.flag_logits` instead encodes each pair with FlagEmbedding's own per-pair code
(query and passage cut separately before the pair is cut), for truncated and odd inputs.

The fast path (``fast_inference=True`` forces it on CPU, in float32) must give the stock path's
scores; the arguments it cannot honour must fall back to the stock path.
"""

from __future__ import annotations

import os
import pickle
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
from FlagEmbedding.utils.tokenizer_compat import prepare_for_model_compat  # noqa: E402

import xm_integrations.integrations.flagembedding.reranker as flag_reranker  # noqa: E402
from tests.models.test_mono_xm import call_with_timeout, run_in_threads  # noqa: E402
from xm_integrations import MissingLanguageError, UnknownLanguageError, XMFlagReranker, resolve_language  # noqa: E402
from xm_integrations.languages.routing import RoutedPair  # noqa: E402
from xm_integrations.testing import build_tiny_mono_xm  # noqa: E402
from xm_integrations.testing.corpus import SAMPLE_PASSAGES, SAMPLE_QUERIES  # noqa: E402

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
        return self.logits_of_ids([self.tokenizer(query, passage, **tokenizer_kwargs)["input_ids"]
                                   for query, passage in pairs], languages)

    def flag_logits(self, pairs: Sequence[tuple[str, str]], languages: Sequence[str] | str, *,
                    max_length: int = 512, query_max_length: int | None = None) -> np.ndarray:
        """Each pair encoded by FlagEmbedding 1.4's own steps: both sides cut, then ``prepare_for_model_compat``."""
        query_max_length = max_length * 3 // 4 if query_max_length is None else query_max_length
        return self.logits_of_ids([flag_encoding(self.tokenizer, query, passage, query_max_length, max_length)
                                   for query, passage in pairs], languages)

    def logits_of_ids(self, encoded: Sequence[list[int]], languages: Sequence[str] | str) -> np.ndarray:
        languages = [languages] * len(encoded) if isinstance(languages, str) else languages
        out = []
        for ids, language in zip(encoded, languages):
            lang_ids = torch.tensor([self.model.config.languages.index(language)])
            with torch.no_grad():
                out.append(self.model(input_ids=torch.tensor([ids]), lang_ids=lang_ids).logits.item())
        return np.array(out)


def flag_encoding(tokenizer: Any, query: str, passage: str, query_max_length: int, max_length: int) -> list[int]:
    """FlagEmbedding 1.4's ``compute_score_single_gpu`` encoding of one pair, step by step."""
    query_ids = tokenizer(query, add_special_tokens=False, max_length=query_max_length, truncation=True)["input_ids"]
    passage_ids = tokenizer(passage, add_special_tokens=False, max_length=max_length, truncation=True)["input_ids"]
    return prepare_for_model_compat(tokenizer, query_ids, passage_ids, truncation="only_second",
                                    max_length=max_length, padding=False)["input_ids"]


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
        "from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker\n"
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


# --- Fast path -----------------------------------------------------------------------------------------------

MIXED = ["fr_XX", "de_DE", "zh_TW", "fr_XX", "en_XX"]
#: A query longer than query_max_length (384 tokens) and passages longer than max_length (512).
LONG = [("question " * 300, "passage " * 400), ("q", "mot " * 1000), ("question " * 600, "court")]
#: Empty sides, and a passage that tokenizes to nothing: FlagEmbedding then encodes the query alone.
ODD = [("", ""), ("query", ""), ("", "passage"), ("query", " ")]


@pytest.fixture(scope="module")
def fast(tiny_mono_xm: Path) -> XMFlagReranker:
    return XMFlagReranker(str(tiny_mono_xm), devices="cpu", fast_inference=True, language="fr")


@pytest.fixture(scope="module")
def stock(tiny_mono_xm: Path) -> XMFlagReranker:
    return XMFlagReranker(str(tiny_mono_xm), devices="cpu", fast_inference=False, language="fr")


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call of the fast path's ``score_pairs`` (its number of pairs)."""
    calls: list[int] = []
    original = flag_reranker.score_pairs
    monkeypatch.setattr(flag_reranker, "score_pairs",
                        lambda model, tokenizer, pairs, *a, **k: calls.append(len(pairs)) or original(
                            model, tokenizer, pairs, *a, **k))
    return calls


def test_encoding_is_flag_embeddings(fast: XMFlagReranker, reference: Reference) -> None:
    """One tokenizer call for all the pairs gives FlagEmbedding's per-pair ids, odd and truncated pairs included."""
    pairs = PAIRS + LONG + ODD
    queries, passages = [query for query, _ in pairs], [passage for _, passage in pairs]
    for query_max_length, max_length in ((384, 512), (6, 16)):
        expected = [flag_encoding(reference.tokenizer, query, passage, query_max_length, max_length)
                    for query, passage in pairs]
        assert fast._encode_pairs(queries, passages, query_max_length, max_length) == expected
    assert expected[-1] == reference.tokenizer(ODD[-1][0])["input_ids"]  # the query alone


def test_fast_path_matches_stock_and_transformers(fast: XMFlagReranker, stock: XMFlagReranker, reference: Reference,
                                                  fast_calls: list[int]) -> None:
    assert_adapters_differ(reference, PAIRS, "fr_XX", "de_DE")
    for language, codes in (("fr", "fr_XX"), (MIXED, MIXED), ("auto", KNOWN_LANGUAGES)):
        expected = reference.flag_logits(PAIRS, codes)
        scores = fast.compute_score(PAIRS, language=language)
        assert isinstance(scores, list) and len(scores) == len(PAIRS)
        np.testing.assert_allclose(scores, expected, atol=ATOL)
        np.testing.assert_allclose(scores, stock.compute_score(PAIRS, language=language), atol=ATOL)
    assert fast_calls == [len(PAIRS)] * 3


def test_fast_path_truncates_like_flag_embedding(fast: XMFlagReranker, stock: XMFlagReranker, reference: Reference,
                                                 fast_calls: list[int]) -> None:
    assert len(reference.tokenizer(LONG[2][0])["input_ids"]) > 384
    pairs = LONG + ODD
    expected = reference.flag_logits(pairs, "de_DE")
    np.testing.assert_allclose(fast.compute_score(pairs, language="de"), expected, atol=ATOL)
    np.testing.assert_allclose(stock.compute_score(pairs, language="de"), expected, atol=ATOL)
    short = reference.flag_logits(pairs, "de_DE", max_length=16, query_max_length=6)  # per-call lengths
    np.testing.assert_allclose(fast.compute_score(pairs, language="de", max_length=16, query_max_length=6), short,
                               atol=ATOL)
    assert fast_calls == [len(pairs)] * 2


def test_fast_path_keeps_outputs(fast: XMFlagReranker, reference: Reference, fast_calls: list[int]) -> None:
    expected = reference.flag_logits(PAIRS, MIXED)
    np.testing.assert_allclose(fast.compute_score(PAIRS, language=MIXED, normalize=True), sigmoid(expected),
                               atol=ATOL)
    single = fast.compute_score(PAIRS[0], language="fr")
    assert isinstance(single, list) and len(single) == 1  # stock 1.4 returns a list for one pair too
    np.testing.assert_allclose(single, reference.flag_logits(PAIRS[:1], "fr_XX"), atol=ATOL)
    assert fast.compute_score([], language="fr") == []
    with pytest.raises(ValueError, match="batch_size"):
        fast.compute_score(PAIRS, batch_size=0)
    assert fast_calls == [len(PAIRS), 1]


def test_pool_workers_take_the_fast_path(fast: XMFlagReranker, reference: Reference, fast_calls: list[int]) -> None:
    """A worker gets a pickled copy and calls ``compute_score_single_gpu`` on its device with routed pairs."""
    worker_copy = pickle.loads(pickle.dumps(fast))
    assert worker_copy.fast_inference is True
    routed = [RoutedPair(pair, fast.languages.index(code)) for pair, code in zip(PAIRS, MIXED)]
    np.testing.assert_allclose(worker_copy.compute_score_single_gpu(routed, device="cpu"),
                               reference.flag_logits(PAIRS, MIXED), atol=ATOL)
    assert fast_calls == [len(PAIRS)]


def test_default_takes_the_fast_path_and_unsupported_arguments_keep_the_stock_path(
        tiny_mono_xm: Path, fast: XMFlagReranker, reference: Reference, fast_calls: list[int]) -> None:
    default = XMFlagReranker(str(tiny_mono_xm), devices="cpu", language="fr")
    assert default.fast_inference is True  # on every device: 1.3-2.4x the stock batching on CPU
    expected = reference.flag_logits(PAIRS, "fr_XX")
    np.testing.assert_allclose(default.compute_score(PAIRS), expected, atol=ATOL)
    assert fast_calls == [len(PAIRS)]
    # Tokenizer options go to stock's tokenizer calls, which the fast path does not make.
    np.testing.assert_allclose(fast.compute_score(PAIRS, verbose=False), expected, atol=ATOL)
    assert fast_calls == [len(PAIRS)]
    stock = XMFlagReranker(str(tiny_mono_xm), devices="cpu", language="fr", fast_inference=False)
    np.testing.assert_allclose(stock.compute_score(PAIRS), expected, atol=ATOL)
    assert fast_calls == [len(PAIRS)]


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
