"""An interrupted build leaves the last committed chunk and resumes; a reader searches while a writer adds.

The writer and the reader are real processes: the build is ended by SIGKILL (no cleanup runs) and
the reader opens the folder on its own, as a second program would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from xm_integrations import ColBERTXM
from xm_integrations.testing import synthetic_passages

pytest.importorskip("lancedb", reason="the lancedb extra is not installed (pip install 'xm-integrations[lancedb]')")

from xm_integrations.index import LanceDBIndex  # noqa: E402

pytestmark = pytest.mark.slow

TOTAL, CHUNK = 600, 100

KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from xm_integrations import ColBERTXM
    from xm_integrations.index import LanceDBIndex
    from xm_integrations.testing import synthetic_passages

    model_path, index_path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def passages():
        for position, passage in enumerate(synthetic_passages({total}, seed=3)):
            if position == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: a machine losing power
            yield passage

    index = LanceDBIndex(index_path, model=ColBERTXM(model_path, device="cpu"), min_documents_for_ann=200)
    index.add_documents(passages(), chunk_size={chunk})
""").format(total=TOTAL, chunk=CHUNK)

READER = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from xm_integrations.index import LanceDBIndex

    index_path, stop_file = sys.argv[1], sys.argv[2]
    index = LanceDBIndex(index_path)
    query = [np.random.default_rng(0).standard_normal((8, index.record.dim)).astype(np.float32)]
    counts = []
    while True:
        stop = os.path.exists(stop_file)
        counts.append(index.count())
        hits = index.search(query_embeddings=query, top_k=5)[0]
        assert len(hits) == min(5, counts[-1]), (len(hits), counts[-1])
        if len(counts) == 1:
            print("ready", flush=True)
        if stop:
            break
    print(json.dumps(counts), flush=True)
""")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)


def test_killed_build_reopens_at_a_committed_chunk_and_resumes(tiny_colbert_xm, tmp_path):
    path = tmp_path / "index"
    killed = _run(KILLED_BUILD, str(tiny_colbert_xm), str(path), "450")
    assert killed.returncode == -9, killed.stderr
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    index = LanceDBIndex(path, model=model)
    committed = len(index)
    # Whole chunks only, nothing of the fifth: the fourth commits in the background while the fifth
    # is read, so the kill finds it either committed or not started (never half-written).
    assert committed in (300, 400)
    assert index.search("Eiffel", language="en", top_k=3)[0]
    result = index.add_documents(synthetic_passages(TOTAL, seed=3), chunk_size=CHUNK)
    assert (result.added, result.skipped, len(index)) == (TOTAL - committed, committed, TOTAL)
    ids = [row["id"] for row in index.table.search().select(["id"]).limit(None).to_arrow().to_pylist()]
    assert sorted(ids) == sorted(p["id"] for p in synthetic_passages(TOTAL, seed=3))


def test_ctrl_c_keeps_the_committed_chunks(tiny_colbert_xm, tmp_path):
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    index = LanceDBIndex(tmp_path / "index", model=model)

    def interrupted():
        for position, passage in enumerate(synthetic_passages(300, seed=4)):
            if position == 250:
                raise KeyboardInterrupt
            yield passage

    with pytest.raises(KeyboardInterrupt):
        index.add_documents(interrupted(), chunk_size=CHUNK)
    assert len(LanceDBIndex(tmp_path / "index", model=model)) == 200
    assert index.add_documents(synthetic_passages(300, seed=4), chunk_size=CHUNK).skipped == 200
    assert len(index) == 300


def test_a_reader_searches_while_a_writer_adds(tiny_colbert_xm, tmp_path):
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    path, stop = tmp_path / "index", tmp_path / "stop"
    passages = synthetic_passages(TOTAL, seed=5)
    writer = LanceDBIndex(path, model=model, min_documents_for_ann=300)  # the IVF-PQ index is trained mid-way
    writer.add_documents(passages[:CHUNK], chunk_size=CHUNK)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        writer.add_documents(passages, chunk_size=CHUNK)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts == sorted(counts) and counts[-1] == TOTAL
    assert all(count % CHUNK == 0 for count in counts)  # never half a chunk
