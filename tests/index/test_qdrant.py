"""What only QdrantIndex does: MaxSim in the engine or here, its collection checks, retries, and the point ids.

Shared behaviour (brute-force equality, filters, updates, the model record) is in
:mod:`tests.index.test_backends`. These run qdrant-client's local mode: the client API a server
answers, with exact search in NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.index.reference import CORPUS, QUERIES
from xm_integrations.errors import IndexBackendError, IndexFormatError, InvalidArgumentError

pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed (pip install 'xm-integrations[qdrant]')")

from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse  # noqa: E402

from xm_integrations.index import QdrantIndex  # noqa: E402
from xm_integrations.index.qdrant import point_id  # noqa: E402


@pytest.fixture(scope="module")
def memory_index(model):
    index = QdrantIndex(location=":memory:", model=model, upsert_batch_size=50)
    index.add_documents(CORPUS[:400])
    return index


def test_engine_and_client_rescoring_return_the_same_hits(memory_index):
    client_side = QdrantIndex(client=memory_index.client, model=memory_index.model, rescore="client")
    for exact in (True, False):
        engine = memory_index.search(QUERIES[:6], language="en", top_k=10, exact=exact, candidates=50)
        here = client_side.search(QUERIES[:6], language="en", top_k=10, exact=exact, candidates=50)
        assert [[h["corpus_id"] for h in hits] for hits in engine] == [[h["corpus_id"] for h in hits] for hits in here]
        np.testing.assert_allclose([h["score"] for hits in engine for h in hits],
                                   [h["score"] for hits in here for h in hits], rtol=1e-5)


def test_points_are_keyed_by_document_id_and_carry_its_payload(memory_index):
    (point,) = memory_index.client.retrieve("passages", ids=[point_id(CORPUS[3]["id"])], with_payload=True,
                                            with_vectors=True)
    assert point.payload["id"] == CORPUS[3]["id"] and point.payload["text"] == CORPUS[3]["text"]
    assert point.payload["metadata"] == {"year": CORPUS[3]["year"], "source": CORPUS[3]["source"]}
    tokens, pooled = np.asarray(point.vector["tokens"]), np.asarray(point.vector["pooled"])
    expected = tokens.mean(axis=0)
    np.testing.assert_allclose(pooled, expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    assert point_id("7") == point_id(7) != point_id("07")


def test_where_takes_a_qdrant_filter_only(memory_index):
    news = models.Filter(must=[models.FieldCondition(key="metadata.source", match=models.MatchValue(value="news"))])
    assert memory_index.count(where=news) == sum(p["source"] == "news" for p in CORPUS[:400])
    with pytest.raises(TypeError, match="models.Filter"):
        memory_index.count(where="year > 3")


def test_a_foreign_collection_and_bad_connection_arguments_are_refused(tmp_path):
    client = QdrantClient(location=":memory:")
    client.create_collection("passages", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    with pytest.raises(IndexFormatError, match="did not write it"):
        QdrantIndex(client=client)
    assert QdrantIndex(client=client, collection_name="other").record is None
    with pytest.raises(InvalidArgumentError, match="exactly one of url, path, location or client"):
        QdrantIndex(url="http://localhost:6333", path=str(tmp_path))
    with pytest.raises(InvalidArgumentError, match="rescore"):
        QdrantIndex(location=":memory:", rescore="gpu")


def test_transient_errors_are_retried_and_others_are_not(memory_index, monkeypatch):
    index = QdrantIndex(client=memory_index.client, model=memory_index.model, max_retries=2, retry_backoff=0)
    real = index.client.count
    failures = [ResponseHandlingException(ConnectionError("refused")),
                UnexpectedResponse(503, "Service Unavailable", b"", None)]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(index.client, "count", flaky)
    assert index.count() == 400 and not failures
    monkeypatch.setattr(index.client, "count", lambda *a, **k: (_ for _ in ()).throw(
        UnexpectedResponse(400, "Bad Request", b"wrong", None)))
    with pytest.raises(IndexBackendError, match="Qdrant failed to <lambda>.*400"):
        index.count()


def test_an_unreachable_server_fails_after_the_retries_without_leaking_the_key():
    with pytest.raises(IndexBackendError, match="after 1 retries") as caught:
        QdrantIndex(url="http://127.0.0.1:9", api_key="secret-key-123", max_retries=1, retry_backoff=0, https=False,
                    check_compatibility=False)
    assert "secret-key-123" not in str(caught.value)
