"""Tests of automatic language detection (``xm_integrations.languages.detection``).

The accuracy thresholds come from ``benchmarks/bench_language_detection.py`` on
``tests/data/language_detection_sample.jsonl`` (py3langid 0.4.0: 97.9% of queries, 100% of
passages, see ``docs/language_detection.md``) minus a margin of about four points on queries
(13 texts) and three on passages (7 texts): a different model, a broken label mapping or a broken
Chinese split fails them, run-to-run noise (there is none, the model is deterministic) does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.paths import DATA
from xm_integrations.languages import detection
from xm_integrations.languages.detection import chinese_script, detect_language
from xm_integrations.languages.resolution import XMOD_LANGUAGE_CODES, UnknownLanguageError

SAMPLE_PATH = DATA / "language_detection_sample.jsonl"
MIN_QUERY_ACCURACY = 0.94
MIN_PASSAGE_ACCURACY = 0.97

# Scripts written without spaces between words: the 3-8 word rule cannot be counted there.
_UNSPACED = {"ja_XX", "zh_CN", "zh_TW", "th_TH", "lo_LA", "km_KH", "my_MM"}


def _load_sample() -> list[dict[str, str]]:
    return [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


SAMPLE = _load_sample()

@pytest.fixture(scope="module")
def sample_predictions() -> list[str]:
    # py3langid is a required dependency: no skip when it is missing, a broken install must fail here.
    return detect_language([row["text"] for row in SAMPLE])


class FakeIdentifier:
    """Stands in for the py3langid model: fixed answers per text, or an error."""

    def __init__(self, answers: dict[str, tuple[str, float]] | None = None, fail_on: str | None = None):
        self.answers = answers or {}
        self.fail_on = fail_on
        self.calls: list[str] = []

    def get(self) -> object:
        return self

    def classify(self, text: str) -> tuple[str, float]:
        self.calls.append(text)
        if text == self.fail_on:
            raise RuntimeError("boom")
        return self.answers.get(text, ("en", 0.99))


class ExplodingIdentifier:
    """Fails on any use: proves that a code path never touches the model."""

    def get(self) -> object:
        raise AssertionError("the model must not be loaded")

    def classify(self, text: str) -> tuple[str, float]:
        raise AssertionError("the model must not be used")


# --- the sample itself ---------------------------------------------------------------------------


def test_sample_is_well_formed() -> None:
    per_language: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in SAMPLE:
        assert set(row) == {"text", "kind", "language"}
        assert row["kind"] in {"query", "passage"}
        assert row["language"] in XMOD_LANGUAGE_CODES
        assert row["text"] == row["text"].strip() and row["text"]
        per_language[row["language"]][row["kind"]] += 1
        if row["kind"] == "query" and row["language"] not in _UNSPACED:
            assert 3 <= len(row["text"].split()) <= 8, row
    assert len(per_language) >= 30
    assert {"zh_CN", "zh_TW"} <= set(per_language)
    for language, kinds in per_language.items():
        assert kinds["query"] >= 3 and kinds["passage"] >= 3, language
    assert len({row["text"] for row in SAMPLE}) == len(SAMPLE), "duplicate texts"


# --- accuracy on the sample ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "minimum"), [("query", MIN_QUERY_ACCURACY), ("passage", MIN_PASSAGE_ACCURACY)])
def test_accuracy_on_sample(sample_predictions: list[str], kind: str, minimum: float) -> None:
    pairs = [(pred, row) for pred, row in zip(sample_predictions, SAMPLE) if row["kind"] == kind]
    wrong = [f"{row['language']}->{pred}: {row['text'][:40]}" for pred, row in pairs if pred != row["language"]]
    accuracy = 1 - len(wrong) / len(pairs)
    assert accuracy >= minimum, f"{kind} accuracy {accuracy:.1%} < {minimum:.0%}; errors: {wrong}"


def test_every_language_is_mostly_recognised(sample_predictions: list[str]) -> None:
    """Catches one language lost to a broken mapping even when the overall accuracy holds."""
    right: dict[str, list[bool]] = defaultdict(list)
    for pred, row in zip(sample_predictions, SAMPLE):
        right[row["language"]].append(pred == row["language"])
    weak = {lang: f"{sum(hits)}/{len(hits)}" for lang, hits in right.items() if sum(hits) * 2 < len(hits)}
    assert not weak


# --- Simplified vs Traditional Chinese -------------------------------------------------------------


def test_chinese_split_on_sample(sample_predictions: list[str]) -> None:
    for pred, row in zip(sample_predictions, SAMPLE):
        if row["language"] in {"zh_CN", "zh_TW"}:
            assert pred == row["language"], row["text"]


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("这个问题怎么解决", "Hans"),
        ("這個問題怎麼解決", "Hant"),
        ("台北的牛肉麵", "Hant"),  # 台 is shared, 麵 is traditional only
        ("我今天下午去公司上班", None),  # only characters common to both scripts
        ("Hello world", None),
        ("", None),
        ("这個", None),  # one of each: a tie
    ],
)
def test_chinese_script(text: str, script: str | None) -> None:
    assert chinese_script(text) == script


def test_chinese_script_tables_are_disjoint() -> None:
    assert not detection._SIMPLIFIED_ONLY & detection._TRADITIONAL_ONLY
    # Characters used in both scripts must stay out of both tables.
    assert not set("后里面台干只系于几云万余范松") & detection._SIMPLIFIED_ONLY


def test_traditional_and_simplified_chinese() -> None:
    assert detect_language("請問最近的捷運站在哪裡？") == "zh_TW"
    assert detect_language("请问最近的地铁站在哪里？") == "zh_CN"
    # No telling character: Simplified, as resolve_language does for a bare "zh".
    assert detect_language("我今天下午去公司上班") == "zh_CN"


def test_chinese_with_one_chinese_adapter() -> None:
    assert detect_language("請問最近的捷運站在哪裡？", ["en_XX", "zh_CN"]) == "zh_CN"
    assert detect_language("请问最近的地铁站在哪里？", ["en_XX", "zh_TW"]) == "zh_TW"


# --- fallback rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "12345", "3.14 + 2 = 5.14", "!!! ???", "🙂👍", "2024-01-01"])
def test_texts_without_letters_fall_back_without_the_model(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(detection, "_IDENTIFIER", ExplodingIdentifier())
    assert detect_language(text) == "en_XX"
    assert detect_language(text, fallback="de") == "de_DE"
    assert detect_language([text, text]) == ["en_XX", "en_XX"]


def test_default_fallback_without_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detection, "_IDENTIFIER", ExplodingIdentifier())
    assert detect_language("", ["fr_XX", "de_DE"]) == "fr_XX"
    assert detect_language("", ["de_DE", "en_XX"]) == "en_XX"
    assert detect_language("", ["de", "en"]) == "en"  # custom codes resolve too


def test_bad_arguments_fail_before_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detection, "_IDENTIFIER", ExplodingIdentifier())
    with pytest.raises(UnknownLanguageError):
        detect_language(["", "hello"], fallback="Klingon")
    with pytest.raises(UnknownLanguageError):
        detect_language("", ["en_XX", "fr_XX"], fallback="ja")
    with pytest.raises(ValueError, match="at least one adapter"):
        detect_language("", [])
    with pytest.raises(TypeError):
        detect_language(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        detect_language(b"bytes are a sequence of ints")  # type: ignore[call-overload]


def test_low_confidence_and_unknown_labels_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIdentifier(
        {
            "shaky": ("de", 0.05),
            "sure": ("de", 0.95),
            "maltese": ("mt", 0.99),  # a language XMOD has no adapter for
            "not language": ("zxx", 0.9),
            "bokmal": ("nb", 0.9),
            "bosnian": ("bs", 0.9),
            "cantonese 這個": ("yue", 0.9),
            "cld2 style": ("zh-Hant", 0.9),
            "hebrew": ("iw", 0.9),
        }
    )
    monkeypatch.setattr(detection, "_IDENTIFIER", fake)
    texts = list(fake.answers)
    assert detect_language(texts) == [
        "en_XX",
        "de_DE",
        "en_XX",
        "en_XX",
        "no_XX",
        "hr_HR",
        "zh_TW",
        "zh_TW",
        "he_IL",
    ]
    assert detect_language("shaky", min_confidence=0.0) == "de_DE"
    assert detect_language("maltese", fallback="it") == "it_IT"


def test_a_failing_text_does_not_break_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIdentifier({"bonjour": ("fr", 0.9)}, fail_on="poison")
    monkeypatch.setattr(detection, "_IDENTIFIER", fake)
    batch = ["bonjour", "poison", None, "", "bonjour"]
    assert detect_language(batch, fallback="de") == ["fr_XX", "de_DE", "de_DE", "de_DE", "fr_XX"]  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["FAQ", "Mozart", "hmm", "iPhone 15 Pro", "COVID-19", "https://example.com/foo"])
def test_names_and_codes_fall_back(text: str) -> None:
    assert detect_language(text, fallback="sv") == "sv_SE"


def test_mixed_batch_keeps_order_and_length() -> None:
    batch = [
        "",
        "Bonjour, je voudrais réserver une table pour deux personnes ce soir.",
        "12345",
        "Das Meeting wurde auf Montag verschoben, bitte check deine E-Mails.",  # German with English words
        "   ",
        "¿Dónde está la estación de tren más cercana?",
        "Il-Belt Valletta hija l-kapitali ta' Malta u tinsab fuq il-kosta tal-Lvant.",  # Maltese: no adapter
    ]
    assert detect_language(batch) == ["en_XX", "fr_XX", "en_XX", "de_DE", "en_XX", "es_XX", "en_XX"]
    assert detect_language(tuple(batch)) == detect_language(batch)
    assert detect_language([]) == []


@pytest.mark.parametrize(
    ("text", "majority"),
    [
        ("Le Kremlin (Кремль) se trouve au centre de Moscou, sur la rive gauche de la Moskova.", "fr_XX"),
        ("Der Tokyo Skytree (東京スカイツリー) ist mit 634 Metern der höchste Fernsehturm der Welt.", "de_DE"),
        ("Как пройти к Eiffel Tower? Мне нужно быть там в семь часов вечера.", "ru_RU"),
    ],
)
def test_mixed_scripts_get_the_majority_language(text: str, majority: str) -> None:
    """The documented rule for code-mixed text: the language most of the text is written in."""
    assert detect_language(text) == majority
    assert detect_language(text, ["en_XX", majority]) == majority


@pytest.mark.parametrize(
    "text", ["hello 你好 привет مرحبا", "Paris 東京 Москва 123", "Bonjour hello hola ciao hallo", "café ☕ 12:30"]
)
def test_mixed_texts_without_majority_never_raise(text: str) -> None:
    """No majority: any adapter of ``available`` may come out, but never an exception, alone or in a batch."""
    available = ["en_XX", "fr_XX", "zh_CN", "ru_RU"]
    single = detect_language(text, available)
    assert single in available
    assert detect_language(["Où est la gare ?", text, ""], available) == ["fr_XX", single, "en_XX"]


# --- ``available`` and return types ---------------------------------------------------------------


def test_available_subset() -> None:
    available = ["en_XX", "de_DE", "fr_XX"]
    texts = [
        "Où se trouve la gare la plus proche ?",
        "Wo ist der nächste Bahnhof?",
        "¿Dónde está la estación de tren más cercana?",  # Spanish: no adapter here
    ]
    assert detect_language(texts, available) == ["fr_XX", "de_DE", "en_XX"]
    assert detect_language(texts, available, fallback="German") == ["fr_XX", "de_DE", "de_DE"]
    # Checkpoints with their own codes: the detected language resolves against them.
    assert detect_language("Wo ist der nächste Bahnhof?", ["en", "de"]) == "de"
    assert detect_language("Jeg liker å gå på tur i skogen om høsten.", ["en_XX", "da_DK", "no_XX"]) == "no_XX"


def test_single_string_returns_string_and_list_returns_list() -> None:
    single = detect_language("The quick brown fox jumps over the lazy dog.")
    assert single == "en_XX" and isinstance(single, str)
    batch = detect_language(["The quick brown fox jumps over the lazy dog."])
    assert batch == ["en_XX"] and isinstance(batch, list)


def test_long_text_is_truncated_before_classification(monkeypatch: pytest.MonkeyPatch) -> None:
    passage = "Le Mont-Saint-Michel est une île rocheuse située en Normandie, entourée par la mer. " * 3000
    seen: list[int] = []
    classify = detection._IDENTIFIER.classify

    def spy(text: str) -> tuple[str, float]:
        seen.append(len(text))
        return classify(text)

    monkeypatch.setattr(detection._IDENTIFIER, "classify", spy)
    assert detect_language(passage) == "fr_XX"
    assert seen and max(seen) <= detection.MAX_DETECTION_CHARS < len(passage)


# --- laziness and thread safety --------------------------------------------------------------------


def test_model_is_loaded_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    identifier = detection._Identifier()
    loads: list[int] = []
    sentinel = object()

    def slow_load() -> object:
        loads.append(1)
        time.sleep(0.05)
        return sentinel

    monkeypatch.setattr(identifier, "_load", slow_load)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(identifier.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [1]
    assert results == [sentinel] * 8


def test_concurrent_detection_agrees_with_serial() -> None:
    texts = [row["text"] for row in SAMPLE[::7]]
    expected = detect_language(texts)
    outputs: list[list[str]] = []
    threads = [threading.Thread(target=lambda: outputs.append(detect_language(texts))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == [expected] * 4


def test_import_does_not_load_the_library() -> None:
    code = "import sys, xm_integrations.languages.detection; print('py3langid' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
