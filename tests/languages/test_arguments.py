"""The ``language=`` argument's edges, the same on every wrapper: ``auto`` in any case, ``auto`` where one adapter
is needed, unknown languages on empty calls, and arguments of the wrong type.

The expected scores of ``"AUTO"`` come from plain transformers with explicit ``lang_ids`` (the
adapters the passages are known to be in), not from our own ``"auto"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.models.test_mono_xm import KNOWN_LANGUAGES, PAIRS, Reference
from xm_integrations import ColBERTXM, MonoXM, UnknownLanguageError, XMColBERTReranker, XMFlagReranker
from xm_integrations.errors import ArgumentTypeError
from xm_integrations.languages.resolution import resolve_language


@pytest.fixture(scope="module")
def mono(tiny_mono_xm: Path) -> MonoXM:
    return MonoXM(str(tiny_mono_xm), device="cpu")


@pytest.fixture(scope="module")
def flag(tiny_mono_xm: Path) -> XMFlagReranker:
    return XMFlagReranker(str(tiny_mono_xm), devices="cpu")


@pytest.fixture(scope="module")
def colbert(tiny_colbert_xm: Path) -> ColBERTXM:
    return ColBERTXM(str(tiny_colbert_xm), device="cpu")


@pytest.fixture(scope="module")
def colbert_reranker(tiny_colbert_xm: Path) -> XMColBERTReranker:
    return XMColBERTReranker(str(tiny_colbert_xm), devices="cpu")


def _calls(mono, flag, colbert, colbert_reranker):
    """One scoring call per wrapper, each taking ``(inputs-or-pairs, language)``."""
    return {
        "MonoXM.predict": lambda pairs, language: mono.predict(pairs, language=language, show_progress_bar=False),
        "XMFlagReranker.compute_score": lambda pairs, language: flag.compute_score(pairs, language=language),
        "ColBERTXM.encode_document": lambda pairs, language: colbert.encode_document(
            [passage for _, passage in pairs], language=language, show_progress_bar=False),
        "XMColBERTReranker.compute_score": lambda pairs, language: colbert_reranker.compute_score(pairs,
                                                                                                 language=language),
    }


@pytest.mark.parametrize("spelling", ["AUTO", " auto ", "Auto"])
def test_auto_is_case_and_space_insensitive(mono: MonoXM, tiny_mono_xm: Path, spelling: str) -> None:
    expected = Reference(tiny_mono_xm).scores(PAIRS, KNOWN_LANGUAGES)
    np.testing.assert_allclose(mono.predict(PAIRS, language=spelling, show_progress_bar=False), expected, atol=1e-5)
    np.testing.assert_allclose(mono.predict(PAIRS, language=[spelling] * len(PAIRS), show_progress_bar=False),
                               expected, atol=1e-5)


def test_auto_is_accepted_by_every_wrapper(mono, flag, colbert, colbert_reranker) -> None:
    for name, call in _calls(mono, flag, colbert, colbert_reranker).items():
        assert len(call(PAIRS, " AUTO ")) == len(PAIRS), name


def test_near_misses_of_auto_suggest_it(mono: MonoXM) -> None:
    with pytest.raises(UnknownLanguageError, match="'auto' detects") as error:
        mono.predict(PAIRS, language="atuo")
    assert error.value.suggestions[0] == "auto"


@pytest.mark.parametrize("where", ["constructor", "set_default_language", "model.model", "resolve_language"])
def test_auto_where_one_adapter_is_needed_says_it_is_per_call(tiny_mono_xm: Path, mono: MonoXM, where: str) -> None:
    with pytest.raises(UnknownLanguageError, match="'auto' is not one adapter.*per call"):
        if where == "constructor":
            MonoXM(str(tiny_mono_xm), language="auto")
        elif where == "set_default_language":
            mono.set_default_language("AUTO")
        elif where == "model.model":
            mono.model.set_default_language("auto")
        else:
            resolve_language("auto", mono.languages)
    assert mono.default_language is None


def test_unknown_language_fails_on_an_empty_call(mono, flag, colbert, colbert_reranker) -> None:
    for name, call in _calls(mono, flag, colbert, colbert_reranker).items():
        with pytest.raises(UnknownLanguageError, match="'xx-nope'"):
            call([], "xx-nope")
        assert len(call([], "fr")) == 0, name  # a valid language on an empty call is fine


@pytest.mark.parametrize("language", [3, 2.5, b"fr", object()])
def test_language_of_the_wrong_type_is_named(mono, flag, colbert, colbert_reranker, language) -> None:
    for name, call in _calls(mono, flag, colbert, colbert_reranker).items():
        with pytest.raises(ArgumentTypeError, match="language must be None, a str"):
            call(PAIRS, language)


def test_a_non_string_entry_in_a_language_list_is_named(mono: MonoXM) -> None:
    with pytest.raises(ArgumentTypeError, match=r"language\[2\] is int"):
        mono.predict(PAIRS, language=["fr", "de", 3, "en", "fr", "fr"])


def test_resolve_language_refuses_a_string_as_the_list_of_adapters() -> None:
    with pytest.raises(TypeError, match=r"not the str 'fr_XX'; for one code write \['fr_XX'\]"):
        resolve_language("fr", "fr_XX")
    assert resolve_language("fr", ["fr_XX"]) == "fr_XX"
