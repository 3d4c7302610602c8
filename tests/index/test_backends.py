"""Every index backend against brute force: the same calls give the exhaustive MaxSim results on LanceDB and Qdrant.

The reference is independent of the indexes: the model's own document and query vectors
(documents rounded to float16, as the indexes store them), scored by a NumPy MaxSim over every
passage, the filters applied in Python (:mod:`tests.index.reference`). Reranking is compared with
plain transformers (``lang_ids`` explicit). Qdrant runs in qdrant-client's local mode, the same
client API a server answers.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from tests.index.reference import CORPUS, QUERIES, opener, recall, reference_scores, top_ids
from tests.models.test_mono_xm import Reference
from xm_integrations import ColBERTXM, MonoXM
from xm_integrations.errors import DuplicateIdError, IndexModelMismatchError
from xm_integrations.index import default_candidates
from xm_integrations.testing import build_tiny_colbert_xm

_EXTRAS = {"lancedb": "lancedb", "qdrant": "qdrant_client"}
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                        reason=f"the {name} extra is not installed"))
            for name, module in _EXTRAS.items()]


def year_after(backend: str, year: int) -> Any:
    """The backend-native ``where`` for ``year > {year}``."""
    if backend == "lancedb":
        return f"year > {year}"
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="metadata.year", range=models.Range(gt=year))])


@pytest.fixture(scope="module", params=BACKENDS)
def built(request, model, tmp_path_factory):
    index = opener(request.param, tmp_path_factory.mktemp(request.param) / "wiki")(model)
    result = index.add_documents(CORPUS, chunk_size=500, show_progress_bar=False)
    assert (result.added, result.skipped) == (len(CORPUS), 0)
    index.backend = request.param
    yield index
    index.close()


def test_exact_mode_returns_the_brute_force_top_k(built, encoded):
    documents, queries = encoded
    expected_scores = reference_scores(queries, documents)
    ids = [p["id"] for p in CORPUS]
    results = built.search(QUERIES, language="en", top_k=10, exact=True)
    assert [[hit["corpus_id"] for hit in hits] for hits in results] == top_ids(expected_scores, ids, 10)
    position = {doc_id: j for j, doc_id in enumerate(ids)}
    for row, hits in enumerate(results):
        np.testing.assert_allclose([hit["score"] for hit in hits],
                                   [expected_scores[row, position[hit["corpus_id"]]] for hit in hits], rtol=1e-5)


def test_default_mode_reaches_the_recall_target_with_exact_scores(built, encoded):
    documents, queries = encoded
    expected_scores = reference_scores(queries, documents)
    ids = [p["id"] for p in CORPUS]
    results = built.search(QUERIES, language="en", top_k=10)
    assert recall(results, top_ids(expected_scores, ids, 10)) >= 0.95
    position = {doc_id: j for j, doc_id in enumerate(ids)}
    for row, hits in enumerate(results):  # only the candidate set is approximate: each score is the exact one
        np.testing.assert_allclose([hit["score"] for hit in hits],
                                   [expected_scores[row, position[hit["corpus_id"]]] for hit in hits], rtol=1e-5)
    few = built.search(QUERIES, language="en", top_k=10, candidates=10)  # the knob's floor: still top_k results
    assert all(len(hits) == 10 for hits in few)


def test_the_default_candidates_grow_with_the_index(built, monkeypatch):
    """search() without ``candidates`` asks the approximate stage for ``default_candidates(count)``."""
    import xm_integrations.index.base as base

    assert [default_candidates(n) for n in (0, 5000, 100_000, 100_001, 1_000_000)] == [100, 100, 100, 101, 1000]
    limits = []
    stage = type(built)._approximate_hits

    def spy(self, query_vectors, keep, limit, filter_values, where):
        limits.append(limit)
        return stage(self, query_vectors, keep, limit, filter_values, where)

    monkeypatch.setattr(type(built), "_approximate_hits", spy)
    monkeypatch.setattr(base, "DOCUMENTS_PER_CANDIDATE", 2)  # so that this small index is "large"
    built.search(QUERIES[:1], language="en", top_k=10)
    built.search(QUERIES[:1], language="en", top_k=10, candidates=20)
    assert len(CORPUS) == 2000 and limits == [1000, 20]  # one candidate per 2 documents; then the caller's


def test_language_and_metadata_filters_match_brute_force_on_the_filtered_corpus(built, encoded):
    documents, queries = encoded
    keep = [j for j, p in enumerate(CORPUS) if p["language"] == "fr_XX" and p["source"] == "news" and p["year"] > 2010]
    assert 10 < len(keep) < len(CORPUS) // 20
    expected = top_ids(reference_scores(queries[:4], [documents[j] for j in keep]), [CORPUS[j]["id"] for j in keep], 5)
    for exact in (True, False):
        results = built.search(QUERIES[:4], language="en", top_k=5, exact=exact, filter={"language": "fr", "source": "news"},
                               where=year_after(built.backend, 2010), return_metadata=True, return_text=True)
        assert [[hit["corpus_id"] for hit in hits] for hits in results] == expected
    by_id = {p["id"]: p for p in CORPUS}
    for hit in results[0]:
        passage = by_id[hit["corpus_id"]]
        assert (hit["text"], hit["language"]) == (passage["text"], "fr_XX")
        assert hit["metadata"] == {"year": passage["year"], "source": "news"}
    assert built.count(filter={"language": ["fr_XX", "de"]}) == sum(p["language"] in ("fr_XX", "de_DE") for p in CORPUS)
    assert built.count(filter={"year": [2001, 2003]}) == sum(p["year"] in (2001, 2003) for p in CORPUS)
    assert built.count(where=year_after(built.backend, 2014)) == sum(p["year"] >= 2015 for p in CORPUS)
    some = [p["id"] for p in CORPUS[:7]]
    assert built.count(filter={"id": some}) == 7


def test_bad_filters_name_the_problem(built):
    with pytest.raises(ValueError, match="cannot filter on 'colour'"):
        built.search(QUERIES[:1], language="en", filter={"colour": "red"})
    with pytest.raises(ValueError, match="empty list"):
        built.count(filter={"source": []})
    with pytest.raises(ValueError, match="Unknown language"):
        built.count(filter={"language": "klingon"})


def test_rerank_in_the_same_call_matches_plain_transformers(built, tiny_mono_xm):
    reference = Reference(tiny_mono_xm)
    reranker = MonoXM(str(tiny_mono_xm), device="cpu")
    plain = built.search(QUERIES[:2], language="en", top_k=20, exact=True, return_text=True, return_metadata=True)
    reranked = built.search(QUERIES[:2], language="en", top_k=5, exact=True, reranker=reranker, rerank_candidates=20)
    for query, candidates, hits in zip(QUERIES, plain, reranked):
        expected = reference.scores([(query, hit["text"]) for hit in candidates], [hit["language"] for hit in candidates])
        order = np.argsort(-expected, kind="stable")[:5]
        assert [hit["corpus_id"] for hit in hits] == [candidates[i]["corpus_id"] for i in order]
        np.testing.assert_allclose([hit["rerank_score"] for hit in hits], expected[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_skip_upsert_error_and_delete(backend, model, tmp_path):
    open_index = opener(backend, tmp_path / "small")
    index = open_index(model)
    first = CORPUS[:50]
    assert index.add_documents(first).added == 50
    again = index.add_documents(first + CORPUS[50:60])
    assert (again.added, again.skipped, len(index)) == (10, 50, 60)
    with pytest.raises(DuplicateIdError, match="on_existing='upsert'"):
        index.add_documents(first[:1], on_existing="error")
    with pytest.raises(DuplicateIdError, match="twice"):
        index.add_documents([CORPUS[70], CORPUS[70]])
    changed = {**first[0], "text": CORPUS[1000]["text"], "language": CORPUS[1000]["language"], "year": 1999}
    result = index.add_documents([changed], on_existing="upsert")
    assert (result.added, result.updated, len(index)) == (0, 1, 60)
    hit = index.search(CORPUS[1000]["text"], language=CORPUS[1000]["language"], top_k=1, return_text=True,
                       return_metadata=True)[0][0]
    assert (hit["corpus_id"], hit["text"], hit["metadata"]["year"]) == (first[0]["id"], changed["text"], 1999)
    with pytest.raises(ValueError, match="'year' is stored as"):
        index.add_documents([{**CORPUS[80], "year": "nineteen"}])
    assert index.delete([first[0]["id"], "not-there"]) == 1
    assert len(index) == 59
    results = index.search([p["text"] for p in CORPUS[:5]], language="en", top_k=59, exact=True)
    assert all(first[0]["id"] not in {h["corpus_id"] for h in hits} for hits in results)
    record = index.record
    index.close()
    with open_index(model) as reopened:  # everything committed is there after reopening
        assert len(reopened) == 59 and reopened.record == record


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("on_existing", ["skip", "upsert", "error"])
def test_an_id_repeated_in_a_later_chunk_of_one_call(backend, model, tmp_path, on_existing):
    """LanceDB commits a chunk while the next one encodes: the next chunk must still see its ids."""
    index = opener(backend, tmp_path / "small")(model)
    repeated = {**CORPUS[0], "text": CORPUS[1000]["text"], "language": CORPUS[1000]["language"]}
    passages = CORPUS[:20] + [repeated] + CORPUS[20:29]  # chunk 2 repeats the first id of chunk 1
    if on_existing == "error":
        with pytest.raises(DuplicateIdError, match="1 id"):
            index.add_documents(passages, chunk_size=20, on_existing="error")
        assert len(index) == 20  # the first chunk, committed; nothing of the second
        return
    result = index.add_documents(passages, chunk_size=20, on_existing=on_existing)
    kept = CORPUS[0]["text"] if on_existing == "skip" else repeated["text"]
    assert (result.added, len(index)) == (29, 29)
    assert (result.skipped, result.updated) == ((1, 0) if on_existing == "skip" else (0, 1))
    stored = index._fetch([CORPUS[0]["id"]])[CORPUS[0]["id"]]
    assert stored.text == kept


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_write_of_a_later_chunk_raises_and_keeps_the_earlier_chunks(backend, model, tmp_path):
    index = opener(backend, tmp_path / "small")(model)
    passages = [{**p, "year": 2000} for p in CORPUS[:20]] + [{**CORPUS[20], "year": "two thousand"}]
    with pytest.raises(ValueError, match="'year' is stored as"):
        index.add_documents(passages + CORPUS[21:40], chunk_size=20)
    assert len(index) == 20
    assert index.add_documents(CORPUS[20:40], chunk_size=20).added == 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_precomputed_embeddings_and_query_embeddings(backend, tmp_path):
    rng = np.random.default_rng(0)
    documents = [rng.standard_normal((int(rng.integers(3, 9)), 16)).astype(np.float32) for _ in range(40)]
    queries = [rng.standard_normal((4, 16)).astype(np.float32) for _ in range(3)]
    open_index = opener(backend, tmp_path / "vectors")
    index = open_index()
    index.add([f"d{i}" for i in range(40)], documents, languages=["fr_XX"] * 40, metadata=[{"n": i} for i in range(40)])
    stored = [d.astype(np.float16).astype(np.float32) for d in documents]
    for exact in (True, False):
        expected = top_ids(reference_scores(queries, stored), [f"d{i}" for i in range(40)], 7)
        results = index.search(query_embeddings=queries, top_k=7, exact=exact, candidates=40)
        assert [[hit["corpus_id"] for hit in hits] for hits in results] == expected
    with pytest.raises(ValueError, match=r"\(tokens, 16\)"):
        index.add(["x"], [np.zeros((3, 8), dtype=np.float32)])
    with pytest.raises(ValueError, match="needs a model"):
        index.search(["a query"])
    index.close()
    with open_index() as reopened:
        assert reopened.record.dim == 16


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_mismatch_is_refused_naming_the_fields(backend, model, tmp_path):
    open_index = opener(backend, tmp_path / "index")
    with open_index(model) as index:
        index.add_documents(CORPUS[:5])
    other_dim = ColBERTXM(str(build_tiny_colbert_xm(tmp_path / "dim16", dim=16)), device="cpu")
    with pytest.raises(IndexModelMismatchError, match="dim: index 32, model 16"):
        open_index(other_dim)
    other_weights = ColBERTXM(str(build_tiny_colbert_xm(tmp_path / "seed1", seed=1)), device="cpu")
    with pytest.raises(IndexModelMismatchError, match="fingerprint"):
        open_index(other_weights)
    with open_index() as index:  # opening without a model reads the record
        record = index.record
    assert (record.dim, record.query_maxlen, record.doc_maxlen, record.languages) == (
        32, model.colbert_encoding.query_maxlen, model.colbert_encoding.doc_maxlen, tuple(model.languages))
