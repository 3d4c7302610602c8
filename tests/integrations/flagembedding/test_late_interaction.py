"""XMColBERTReranker: FlagReranker's call, ColBERT-XM's MaxSim, against colbert-ai's vectors and NumPy."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest

from tests.models.test_colbert_xm import ARRAYS, REFERENCE, _reference_documents, numpy_maxsim
from xm_integrations import MissingLanguageError, XMColBERTReranker
from xm_integrations.models.colbert_xm.model import ColBERTXM
from xm_integrations.testing import build_tiny_mono_xm

QUERIES, DOCUMENTS = REFERENCE["queries"], REFERENCE["documents"]


def expected_score(query_index: int, document_index: int, language: str) -> float:
    query = ARRAYS[f"{language}.query_embeddings"][query_index]
    return numpy_maxsim(query, _reference_documents(ARRAYS, language)[document_index])


@pytest.fixture(scope="module")
def colbert(tiny_colbert_xm) -> ColBERTXM:
    return ColBERTXM(tiny_colbert_xm, device="cpu")


@pytest.fixture(scope="module")
def reranker(colbert) -> XMColBERTReranker:
    return XMColBERTReranker(model=colbert)


def test_scores_are_maxsim_of_colbert_ai_vectors(reranker):
    index_pairs = [(0, 0), (0, 3), (1, 1), (3, 4), (2, 2), (0, 0)]
    pairs = [(QUERIES[q], DOCUMENTS[d]) for q, d in index_pairs]
    scores = reranker.compute_score(pairs, language="fr")
    assert isinstance(scores, list) and all(isinstance(score, float) for score in scores)
    expected = [expected_score(q, d, "fr_XX") for q, d in index_pairs]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-4)

    normalized = reranker.compute_score(pairs, language="fr", normalize=True)
    np.testing.assert_allclose(normalized, [(1 + s / 32) / 2 for s in expected], rtol=1e-5, atol=1e-5)
    assert all(0.0 <= score <= 1.0 for score in normalized)
    assert np.argsort(normalized).tolist() == np.argsort(scores).tolist()


def test_a_language_per_pair_and_auto(reranker):
    index_pairs = [(0, 0), (1, 1), (2, 2)]
    pairs = [(QUERIES[q], DOCUMENTS[d]) for q, d in index_pairs]
    languages = ["fr_XX", "de_DE", "zh_CN"]
    expected = [expected_score(q, d, code) for (q, d), code in zip(index_pairs, languages)]
    np.testing.assert_allclose(reranker.compute_score(pairs, language=["fr", "de", "zh"]), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(reranker.compute_score(pairs, language="auto"), expected, rtol=1e-5, atol=1e-4)


def test_each_distinct_text_is_encoded_once(colbert, monkeypatch):
    reranker = XMColBERTReranker(model=colbert)
    encoded: dict[str, list[str]] = {"query": [], "document": []}
    for task, name in (("query", "encode_query"), ("document", "encode_document")):
        original = getattr(colbert, name)

        def spy(texts, *args, _task=task, _original=original, **kwargs):
            encoded[_task].extend(texts)
            return _original(texts, *args, **kwargs)

        monkeypatch.setattr(colbert, name, spy)
    pairs = [(QUERIES[0], document) for document in DOCUMENTS] * 3
    scores = reranker.compute_score(pairs, language="fr")
    assert encoded["query"] == [QUERIES[0]]
    assert sorted(encoded["document"]) == sorted(DOCUMENTS)
    assert scores[: len(DOCUMENTS)] == scores[len(DOCUMENTS): 2 * len(DOCUMENTS)]


def test_instructions_are_prepended_like_flag_embedding(colbert):
    plain = XMColBERTReranker(model=colbert)
    instructed = XMColBERTReranker(model=colbert, query_instruction_for_rerank="question: ",
                                   passage_instruction_for_rerank="passage: ")
    pairs = [(QUERIES[0], DOCUMENTS[0]), (QUERIES[1], DOCUMENTS[3])]
    assert instructed.compute_score(pairs, language="fr") == plain.compute_score(
        [("question: " + q, "passage: " + p) for q, p in pairs], language="fr"
    )


def test_single_pair_empty_input_and_bad_input(reranker):
    (score,) = reranker.compute_score((QUERIES[0], DOCUMENTS[0]), language="fr")
    assert score == pytest.approx(expected_score(0, 0, "fr_XX"), rel=1e-5, abs=1e-4)
    assert reranker.compute_score([], language="fr") == []
    with pytest.raises(TypeError, match="Input 1 has a passage of type NoneType"):
        reranker.compute_score([("q", "p"), ("q", None)], language="fr")
    with pytest.raises(TypeError, match="Input 0 is"):
        reranker.compute_score([("q", "p", "extra")], language="fr")
    with pytest.raises(ValueError, match="language has 1 entries but there are 2 inputs"):
        reranker.compute_score([("q", "p"), ("q", "p")], language=["fr"])
    with pytest.raises(MissingLanguageError):
        reranker.compute_score([("q", "p")])
    with pytest.raises(TypeError, match="unsupported arguments \\['padding'\\]"):
        reranker.compute_score([("q", "p")], language="fr", padding=True)


def test_lengths_that_cannot_apply_are_reported(colbert, caplog):
    with caplog.at_level(logging.WARNING, logger="xm_integrations.integrations.flagembedding.late_interaction"):
        XMColBERTReranker(model=colbert, max_length=128, query_max_length=64)
    assert "max_length=128 is not applied" in caplog.text
    assert "query_max_length=64 is not applied" in caplog.text


def test_loads_like_flag_reranker_by_path_with_language(tiny_colbert_xm):
    reranker = XMColBERTReranker(str(tiny_colbert_xm), use_fp16=True, devices=["cpu"], batch_size=2,
                                 normalize=True, language="German")
    assert reranker.default_language == "de_DE" and not reranker.use_fp16  # fp16 is off on CPU, as in FlagEmbedding
    scores = reranker.compute_score([(QUERIES[1], DOCUMENTS[1]), (QUERIES[1], DOCUMENTS[0])])
    expected = [expected_score(1, 1, "de_DE"), expected_score(1, 0, "de_DE")]
    np.testing.assert_allclose(scores, [(1 + s / 32) / 2 for s in expected], rtol=1e-5, atol=1e-5)


def test_a_pipeline_written_for_flag_reranker_runs_unchanged(reranker, tmp_path):
    """The same code drives FlagEmbedding's FlagReranker and XMColBERTReranker."""
    flag_embedding = pytest.importorskip("FlagEmbedding")

    def top_passages(any_reranker, query: str, passages: list[str], k: int) -> list[tuple[float, str]]:
        scores = any_reranker.compute_score([[query, passage] for passage in passages], batch_size=4,
                                            max_length=512, normalize=True)
        return sorted(zip(scores, passages), reverse=True)[:k]

    mono = build_tiny_mono_xm(tmp_path / "mono-xm", default_language="fr_XX")
    flag = flag_embedding.FlagReranker(str(mono), devices=["cpu"])
    reranker.set_default_language("fr")
    try:
        for any_reranker in (flag, reranker):
            top = top_passages(any_reranker, QUERIES[0], DOCUMENTS[:4], k=2)
            assert len(top) == 2 and all(isinstance(score, float) and 0 <= score <= 1 for score, _ in top)
    finally:
        reranker.model[0].auto_model.config.default_language = None

    stock = inspect.signature(flag_embedding.FlagReranker.__init__).parameters
    ours = inspect.signature(XMColBERTReranker.__init__).parameters
    assert set(stock) - {"kwargs"} <= set(ours)
    stock_call = inspect.signature(flag.compute_score_single_gpu).parameters
    call = inspect.signature(XMColBERTReranker.compute_score).parameters
    assert {"sentence_pairs", "batch_size", "query_max_length", "max_length", "normalize"} <= set(stock_call) & set(call)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_an_accelerator_stays_close_to_colbert_ai(tiny_colbert_xm):
    reranker = XMColBERTReranker(str(tiny_colbert_xm), use_fp16=True, devices=[0], language="fr")
    assert reranker.use_fp16 and reranker.model.device.type == "cuda"
    index_pairs = [(0, 0), (0, 3), (3, 4)]
    scores = reranker.compute_score([(QUERIES[q], DOCUMENTS[d]) for q, d in index_pairs])
    expected = [expected_score(q, d, "fr_XX") for q, d in index_pairs]
    np.testing.assert_allclose(scores, expected, rtol=2e-2, atol=5e-2)
