"""What only LanceDBIndex does: the IVF-PQ index it trains, its folder checks, no folder left by a failed first chunk.

The behaviour every backend shares (brute-force equality, filters, updates, the model record) is
tested in :mod:`tests.index.test_backends`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.index.reference import CORPUS, QUERIES, recall, reference_scores, top_ids
from xm_integrations.errors import IndexFormatError, InvalidArgumentError

pytest.importorskip("lancedb", reason="the lancedb extra is not installed (pip install 'xm-integrations[lancedb]')")

from xm_integrations.index import LanceDBIndex, default_nprobes  # noqa: E402


def test_the_ivf_pq_index_is_trained_and_reaches_the_recall_target_from_it(model, encoded, tmp_path):
    index = LanceDBIndex(tmp_path / "wiki", model=model)
    index.add_documents(CORPUS[:1200], chunk_size=400)
    assert "vectors_idx" in {entry.name for entry in index.table.list_indices()}
    assert index.table.index_stats("vectors_idx").num_unindexed_rows == 0
    documents, queries = encoded
    expected = top_ids(reference_scores(queries, documents[:1200]), [p["id"] for p in CORPUS[:1200]], 10)
    assert recall(index.search(QUERIES, language="en", top_k=10), expected) >= 0.95


def test_the_default_nprobes_grow_with_the_index(model, tmp_path, monkeypatch):
    """Without ``nprobes`` each query probes ``default_nprobes(count)`` partitions; a given value wins."""
    import lancedb.query

    import xm_integrations.index.lancedb as backend

    assert [default_nprobes(n) for n in (0, 100_000, 400_000, 400_001, 1_000_000)] == [20, 20, 20, 21, 50]
    probes = []
    builder_nprobes = lancedb.query.LanceVectorQueryBuilder.nprobes

    def spy(self, nprobes):
        probes.append(nprobes)
        return builder_nprobes(self, nprobes)

    monkeypatch.setattr(lancedb.query.LanceVectorQueryBuilder, "nprobes", spy)
    monkeypatch.setattr(backend, "DOCUMENTS_PER_PROBE", 2)  # so that this small index is "large"
    index = LanceDBIndex(tmp_path / "wiki", model=model)
    index.add_documents(CORPUS[:60], show_progress_bar=False)
    index.search(QUERIES[:1], language="en", top_k=5)
    index.nprobes = 7
    index.search(QUERIES[:1], language="en", top_k=5)
    assert probes == [30, 7]  # one probe per 2 documents; then the caller's


def test_float32_storage_gives_the_float16_results_and_is_kept_on_reopen(model, encoded, tmp_path):
    import pyarrow as pa

    documents, queries = encoded
    ids = [p["id"] for p in CORPUS[:1200]]
    expected_scores = reference_scores(queries, documents[:1200])  # documents rounded to float16
    index = LanceDBIndex(tmp_path / "wiki", model=model, vector_dtype="float32")
    index.add_documents(CORPUS[:1200], chunk_size=400)
    assert index.table.schema.field("vectors").type.value_type.value_type == pa.float32()
    assert "vectors_idx" in {entry.name for entry in index.table.list_indices()}
    exact = index.search(QUERIES, language="en", top_k=10, exact=True)
    assert [[hit["corpus_id"] for hit in hits] for hits in exact] == top_ids(expected_scores, ids, 10)
    position = {doc_id: j for j, doc_id in enumerate(ids)}
    for row, hits in enumerate(index.search(QUERIES, language="en", top_k=10)):
        np.testing.assert_allclose([hit["score"] for hit in hits],
                                   [expected_scores[row, position[hit["corpus_id"]]] for hit in hits], rtol=1e-5)
    assert recall(index.search(QUERIES, language="en", top_k=10), top_ids(expected_scores, ids, 10)) >= 0.95
    assert LanceDBIndex(tmp_path / "wiki").vector_dtype == "float32"
    with pytest.raises(InvalidArgumentError, match="stores float32 vectors; vector_dtype='float16' applies only"):
        LanceDBIndex(tmp_path / "wiki", vector_dtype="float16")
    with pytest.raises(InvalidArgumentError, match="vector_dtype must be one of 'float16', 'float32', got 'bfloat16'"):
        LanceDBIndex(tmp_path / "other", vector_dtype="bfloat16")
    assert not (tmp_path / "other").exists()
    assert LanceDBIndex(tmp_path / "fresh").vector_dtype == "float16"


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


def test_a_bad_sql_where_names_the_expression(model, tmp_path):
    index = LanceDBIndex(tmp_path / "small", model=model)
    index.add_documents(CORPUS[:5])
    with pytest.raises(ValueError, match="where 'year >>> 3' is not a filter"):
        index.count(where="year >>> 3")


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
