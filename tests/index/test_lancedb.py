"""LanceDBIndex against brute force: exact mode equals NumPy MaxSim over the stored vectors, default mode reaches the recall target.

The reference is independent of the index: the model's own document and query vectors (documents
rounded to float16, as the index stores them), scored by a NumPy MaxSim over every passage, the
filters applied in Python. Reranking is compared with plain transformers (``lang_ids`` explicit).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.test_mono_xm import Reference
from xm_integrations import ColBERTXM, MonoXM
from xm_integrations.errors import DuplicateIdError, IndexFormatError, IndexModelMismatchError
from xm_integrations.testing import build_tiny_colbert_xm, synthetic_passages

pytest.importorskip("lancedb", reason="the lancedb extra is not installed (pip install 'xm-integrations[lancedb]')")

from xm_integrations.index import LanceDBIndex  # noqa: E402

CORPUS = synthetic_passages(2000, seed=1)
QUERIES = [passage["text"][:60] for passage in synthetic_passages(24, seed=2)]


def reference_scores(query_vectors: list[np.ndarray], document_vectors: list[np.ndarray]) -> np.ndarray:
    """MaxSim of every query against every document, in NumPy float64 (documents already float16-rounded)."""
    scores = np.zeros((len(query_vectors), len(document_vectors)))
    for j, document in enumerate(document_vectors):
        for i, query in enumerate(query_vectors):
            scores[i, j] = (query.astype(np.float64) @ document.astype(np.float64).T).max(axis=1).sum()
    return scores


def top_ids(scores: np.ndarray, ids: list[str], k: int) -> list[list[str]]:
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


@pytest.fixture(scope="module")
def model(tiny_colbert_xm) -> ColBERTXM:
    return ColBERTXM(str(tiny_colbert_xm), device="cpu")


@pytest.fixture(scope="module")
def encoded(model):
    """The reference: every passage's float16-rounded vectors and every query's vectors, from the model directly."""
    documents = model.encode_document([p["text"] for p in CORPUS], language=[p["language"] for p in CORPUS])
    queries = model.encode_query(QUERIES, language="en")
    return ([d.numpy().astype(np.float16).astype(np.float32) for d in documents], [q.numpy() for q in queries])


@pytest.fixture(scope="module")
def built(model, tmp_path_factory) -> LanceDBIndex:
    index = LanceDBIndex(tmp_path_factory.mktemp("index") / "wiki", model=model)
    result = index.add_documents(CORPUS, chunk_size=500, show_progress_bar=False)
    assert (result.added, result.skipped) == (len(CORPUS), 0)
    return index


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


def test_default_mode_uses_the_ivf_pq_index_and_reaches_the_recall_target(built, encoded):
    assert "vectors_idx" in {index.name for index in built.table.list_indices()}
    documents, queries = encoded
    expected = top_ids(reference_scores(queries, documents), [p["id"] for p in CORPUS], 10)
    results = built.search(QUERIES, language="en", top_k=10)
    found = sum(len({hit["corpus_id"] for hit in hits} & set(best)) for hits, best in zip(results, expected))
    assert found / (10 * len(QUERIES)) >= 0.95
    few = built.search(QUERIES, language="en", top_k=10, candidates=10)  # the knob's floor: still top_k results
    assert all(len(hits) == 10 for hits in few)


def test_language_and_metadata_filters_match_brute_force_on_the_filtered_corpus(built, encoded):
    documents, queries = encoded
    keep = [j for j, p in enumerate(CORPUS) if p["language"] == "fr_XX" and p["source"] == "news" and p["year"] > 2010]
    assert 10 < len(keep) < len(CORPUS) // 20
    expected = top_ids(reference_scores(queries[:4], [documents[j] for j in keep]), [CORPUS[j]["id"] for j in keep], 5)
    for exact in (True, False):
        results = built.search(QUERIES[:4], language="en", top_k=5, exact=exact, filter={"language": "fr", "source": "news"},
                               where="year > 2010", return_metadata=True, return_text=True)
        assert [[hit["corpus_id"] for hit in hits] for hits in results] == expected
    by_id = {p["id"]: p for p in CORPUS}
    for hit in results[0]:
        passage = by_id[hit["corpus_id"]]
        assert (hit["text"], hit["language"]) == (passage["text"], "fr_XX")
        assert hit["metadata"] == {"year": passage["year"], "source": "news"}
    assert built.count(filter={"language": ["fr_XX", "de"]}) == sum(p["language"] in ("fr_XX", "de_DE") for p in CORPUS)
    assert built.count(where="year >= 2015") == sum(p["year"] >= 2015 for p in CORPUS)


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


def test_add_skip_upsert_error_and_delete(model, tmp_path):
    index = LanceDBIndex(tmp_path / "small", model=model)
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
    assert index.delete([first[0]["id"], "not-there"]) == 1
    assert len(index) == 59
    results = index.search([p["text"] for p in CORPUS[:5]], language="en", top_k=59, exact=True)
    assert all(first[0]["id"] not in {h["corpus_id"] for h in hits} for hits in results)
    reopened = LanceDBIndex(tmp_path / "small", model=model)  # everything committed is there after reopening
    assert len(reopened) == 59 and reopened.record == index.record


def test_precomputed_embeddings_and_query_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    documents = [rng.standard_normal((int(rng.integers(3, 9)), 16)).astype(np.float32) for _ in range(40)]
    queries = [rng.standard_normal((4, 16)).astype(np.float32) for _ in range(3)]
    index = LanceDBIndex(tmp_path / "vectors")
    index.add([f"d{i}" for i in range(40)], documents, languages=["fr_XX"] * 40, metadata=[{"n": i} for i in range(40)])
    stored = [d.astype(np.float16).astype(np.float32) for d in documents]
    expected = top_ids(reference_scores(queries, stored), [f"d{i}" for i in range(40)], 7)
    results = index.search(query_embeddings=queries, top_k=7)
    assert [[hit["corpus_id"] for hit in hits] for hits in results] == expected
    assert LanceDBIndex(tmp_path / "vectors").record.dim == 16
    with pytest.raises(ValueError, match=r"\(tokens, 16\)"):
        index.add(["x"], [np.zeros((3, 8), dtype=np.float32)])
    with pytest.raises(ValueError, match="needs a model"):
        index.search(["a query"])


def test_model_mismatch_is_refused_naming_the_fields(model, built, tmp_path):
    other_dim = ColBERTXM(str(build_tiny_colbert_xm(tmp_path / "dim16", dim=16)), device="cpu")
    with pytest.raises(IndexModelMismatchError, match="dim: index 32, model 16"):
        LanceDBIndex(built.path, model=other_dim)
    other_weights = ColBERTXM(str(build_tiny_colbert_xm(tmp_path / "seed1", seed=1)), device="cpu")
    with pytest.raises(IndexModelMismatchError, match="fingerprint"):
        LanceDBIndex(built.path, model=other_weights)
    record = LanceDBIndex(built.path).record  # opening without a model reads the record
    assert (record.dim, record.query_maxlen, record.doc_maxlen, record.languages) == (
        32, model.colbert_encoding.query_maxlen, model.colbert_encoding.doc_maxlen, tuple(model.languages))


def test_foreign_corrupt_and_file_paths_are_refused(model, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(IndexFormatError, match="not an xm-integrations index"):
        LanceDBIndex(tmp_path / "notes")
    with pytest.raises(IndexFormatError, match="is a file"):
        LanceDBIndex(tmp_path / "notes" / "todo.txt")
    import lancedb
    import pyarrow as pa

    lancedb.connect(str(tmp_path / "foreign")).create_table("passages", pa.table({"id": ["a"]}))
    with pytest.raises(IndexFormatError, match="did not write"):
        LanceDBIndex(tmp_path / "foreign")
    index = LanceDBIndex(tmp_path / "damaged", model=model)
    index.add_documents(CORPUS[:5])
    for manifest in (tmp_path / "damaged" / "passages.lance" / "_versions").iterdir():
        manifest.write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match="damaged"):
        LanceDBIndex(tmp_path / "damaged", model=model)


def test_a_failed_first_chunk_leaves_no_folder_and_empty_calls_are_empty(model, tmp_path):
    with pytest.raises(ValueError, match="Unknown language"):
        LanceDBIndex(tmp_path / "new", model=model).add_documents([{"text": "x", "language": "klingon"}])
    assert not (tmp_path / "new").exists()
    index = LanceDBIndex(tmp_path / "new", model=model)
    assert not (tmp_path / "new").exists() and len(index) == 0
    assert index.search([], language="en") == [] and index.search("x", language="en") == [[]]
    LanceDBIndex(tmp_path / "new", model=model).add_documents(CORPUS[:3])  # another writer creates it
    assert len(index) == 3 and index.search("x", language="en", top_k=2)[0]
    with pytest.raises(ValueError, match="candidates must be a positive integer"):
        index.search("x", language="en", candidates=0)
