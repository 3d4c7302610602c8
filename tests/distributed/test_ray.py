"""Distributed encoding on a real two-node Ray cluster, against the single-process encoding and index.

The cluster (a head and a worker node, two logical CPUs each: one encoder actor and one read task) runs
in a network namespace (:class:`~xm_integrations.testing.LocalRayCluster`); drivers run there too
(:mod:`tests.distributed.ray_driver`). The references are computed here, in this process, with
``ColBERTXM.encode_document`` and ``add_documents``: what Ray produced must equal them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.index.reference import opener, reference_scores, top_ids
from xm_integrations.testing import synthetic_passages
from xm_integrations.testing.ray_cluster import LocalRayCluster, cannot_start_reason

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(cannot_start_reason() is not None, reason=str(cannot_start_reason())),
              pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) is None for m in ("lancedb", "qdrant_client")),
                                 reason="the lancedb and qdrant extras are needed")]

REPO = Path(__file__).resolve().parents[2]
QUERIES = [passage["text"][:50] for passage in synthetic_passages(8, seed=12)]


def corpus(count: int, seed: int) -> list[dict]:
    """Synthetic passages, every fifth without a language (detected: the jobs run with ``language="auto"``)."""
    passages = synthetic_passages(count, seed=seed)
    return [{k: v for k, v in p.items() if k != "language"} if i % 5 == 0 else p for i, p in enumerate(passages)]


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(workers=1, cpus_per_node=2) as running:  # an actor and a read task per node
        yield running


def write_jsonl(path: Path, passages: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in passages))
    return path


def driver(cluster: LocalRayCluster, tmp_path: Path, **job) -> list[str]:
    """The driver command for ``job`` (written to a file in ``tmp_path``)."""
    job_file = tmp_path / f"job-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps({"address": cluster.address, **job}, default=str))
    return [sys.executable, "-m", "tests.distributed.ray_driver", str(job_file)]


def run_driver(cluster: LocalRayCluster, tmp_path: Path, **job) -> dict:
    command = driver(cluster, tmp_path, **job)
    done = cluster.run(command, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(Path(command[-1] + ".result").read_text())


def test_ray_encoding_equals_the_single_process_encoding(cluster, model, tiny_colbert_xm, tmp_path):
    passages = corpus(300, seed=21)
    run_driver(cluster, tmp_path, kind="encode", model=tiny_colbert_xm,
               corpus=write_jsonl(tmp_path / "corpus.jsonl", passages), output=tmp_path / "encoded",
               options={"language": "auto", "batch_size": 40})
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "encoded")
    rows = {row["id"]: row for row in table.to_pylist()}
    assert sorted(rows) == sorted(p["id"] for p in passages) and len(table) == len(passages)
    codes = model._resolve_input_languages([p.get("language") or "auto" for p in passages], len(passages),
                                           lambda positions: [passages[i]["text"] for i in positions])
    expected = model.encode_document([p["text"] for p in passages], language=codes)
    for passage, code, vectors in zip(passages, codes, expected):
        row = rows[passage["id"]]
        assert (row["language"], row["text"], row["error"]) == (code, passage["text"], None)
        np.testing.assert_allclose(np.asarray(row["vectors"], dtype=np.float32), vectors.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_an_index_built_through_ray_searches_like_one_built_in_one_process(cluster, model, tiny_colbert_xm, tmp_path, backend):
    passages = corpus(400, seed=22)
    path = write_jsonl(tmp_path / "corpus.jsonl", passages)
    if backend == "lancedb":  # through the command line: xm-integrations index ... --ray ADDRESS
        done = cluster.run([sys.executable, "-m", "xm_integrations", "index", str(path), "--index",
                            str(tmp_path / "ray"), "--model", str(tiny_colbert_xm), "--language", "auto",
                            "--ray", cluster.address, "--no-progress"], cwd=REPO)
        assert done.returncode == 0 and "400 added" in done.stderr, done.stderr[-3000:]
    else:
        summary = run_driver(cluster, tmp_path, kind="index", backend=backend, model=str(tiny_colbert_xm),
                             corpus=path, index=tmp_path / "ray", options={"language": "auto", "batch_size": 50})
        assert (summary["added"], summary["count"], summary["failed"]) == (400, 400, [])
    with opener(backend, tmp_path / "ray")(model) as through_ray, opener(backend, tmp_path / "local")(model) as local:
        local.add_documents(passages, language="auto")
        for exact in (True, False):
            ray_hits = through_ray.search(QUERIES, language="en", top_k=10, exact=exact, return_metadata=True)
            local_hits = local.search(QUERIES, language="en", top_k=10, exact=exact, return_metadata=True)
            assert [[h["corpus_id"] for h in hits] for hits in ray_hits] == [[h["corpus_id"] for h in hits]
                                                                             for hits in local_hits]
            assert [[(h["language"], h["metadata"]) for h in hits] for hits in ray_hits] == [
                [(h["language"], h["metadata"]) for h in hits] for hits in local_hits]
            # vectors within 1e-5 (other batches, other padding), so float16 rounding may differ in the last bit
            np.testing.assert_allclose([h["score"] for hits in ray_hits for h in hits],
                                       [h["score"] for hits in local_hits for h in hits], rtol=1e-4)


def test_a_parquet_corpus_read_by_ray_indexes_like_passages_in_memory_and_resumes(cluster, model, tiny_colbert_xm,
                                                                                  tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xm_integrations.index import LanceDBIndex

    passages = corpus(300, seed=26)
    table = pa.table({"id": [p["id"] for p in passages], "text": [p["text"] for p in passages],
                      "language": [p.get("language") for p in passages], "year": [p["year"] for p in passages],
                      "source": [p["source"] for p in passages]})
    pq.write_table(table.slice(0, 120), tmp_path / "first.parquet")
    pq.write_table(table, tmp_path / "all.parquet")
    job = {"kind": "index", "backend": "lancedb", "model": str(tiny_colbert_xm), "index": tmp_path / "ray",
           "options": {"language": "auto", "batch_size": 40}}
    first = run_driver(cluster, tmp_path, corpus=str(tmp_path / "first.parquet"), **job)
    again = run_driver(cluster, tmp_path, corpus=str(tmp_path / "all.parquet"), **job)
    assert (first["added"], again["added"], again["skipped"], again["count"]) == (120, 180, 120, 300)
    with LanceDBIndex(tmp_path / "ray", model=model) as through_ray, LanceDBIndex(tmp_path / "local", model=model) as local:
        local.add_documents(passages, language="auto")
        ray_hits = through_ray.search(QUERIES, language="en", top_k=10, exact=True, return_metadata=True)
        local_hits = local.search(QUERIES, language="en", top_k=10, exact=True, return_metadata=True)
        assert [[(h["corpus_id"], h["language"], h["metadata"]) for h in hits] for hits in ray_hits] == [
            [(h["corpus_id"], h["language"], h["metadata"]) for h in hits] for hits in local_hits]


def test_a_failing_passage_is_reported_by_id_alone_and_a_rerun_completes_it(cluster, model, tiny_colbert_xm, tmp_path):
    passages = corpus(200, seed=23)
    broken = [{**p, "language": "klingon"} if i == 77 else p for i, p in enumerate(passages)]
    job = {"kind": "index", "backend": "lancedb", "model": str(tiny_colbert_xm), "index": tmp_path / "index",
           "options": {"language": "auto", "batch_size": 20}}
    summary = run_driver(cluster, tmp_path, corpus=write_jsonl(tmp_path / "broken.jsonl", broken), **job)
    (failure,) = summary["failed"]  # its batch of 20 was split until the bad passage stood alone
    assert failure["ids"] == [passages[77]["id"]] and "klingon" in failure["error"]
    assert summary["added"] == summary["count"] == 199
    again = run_driver(cluster, tmp_path, corpus=write_jsonl(tmp_path / "fixed.jsonl", passages), **job)
    assert (again["added"], again["skipped"], again["count"], again["failed"]) == (1, 199, 200, [])


def _index_ids(path: Path) -> list[str]:
    from xm_integrations.index import LanceDBIndex

    index = LanceDBIndex(path)
    return [] if index.table is None else index.table.search().select(["id"]).limit(None).to_arrow().column("id").to_pylist()


def _wait_until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_killed_workers_and_a_killed_driver_neither_lose_nor_duplicate_passages(cluster, model, tiny_colbert_xm, tmp_path):
    passages = corpus(2400, seed=24)
    job = {"kind": "index", "backend": "lancedb", "model": str(tiny_colbert_xm), "index": tmp_path / "index",
           "corpus": write_jsonl(tmp_path / "corpus.jsonl", passages), "min_documents_for_ann": 10**9,
           "options": {"language": "auto", "batch_size": 16, "chunk_size": 100}}
    command = driver(cluster, tmp_path, **job)
    first = cluster.popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until(lambda: len(_index_ids(tmp_path / "index")) >= 200)
    workers: list[str] = []

    def encoder_actors() -> bool:  # its title is "ray::MapWorker(MapBatches(DocumentEncoder))", plus a suffix while busy
        workers[:] = subprocess.run(["pgrep", "-f", r"^ray::MapWorker\(MapBatches\(DocumentEncoder\)\)"],
                                    capture_output=True, text=True).stdout.split()
        return bool(workers)

    _wait_until(encoder_actors, timeout=30)
    subprocess.run(["kill", "-9", workers[0]], check=False)  # Ray restarts the actor and re-runs its batch
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    ids = _index_ids(tmp_path / "index")
    assert sorted(ids) == sorted(p["id"] for p in passages)  # nothing lost, nothing twice

    job["index"] = tmp_path / "second"
    second = cluster.popen(driver(cluster, tmp_path, **job), cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    _wait_until(lambda: len(_index_ids(tmp_path / "second")) >= 300)
    second.send_signal(signal.SIGKILL)  # the driver itself, mid-job
    second.wait(timeout=60)
    kept = len(_index_ids(tmp_path / "second"))
    assert 300 <= kept < len(passages)
    summary = run_driver(cluster, tmp_path, **job)
    assert (summary["skipped"], summary["added"], summary["count"]) == (kept, len(passages) - kept, len(passages))
    assert sorted(_index_ids(tmp_path / "second")) == sorted(p["id"] for p in passages)


def test_encoded_parquet_files_are_ingested_with_their_model_record(cluster, model, tiny_colbert_xm, tmp_path):
    from xm_integrations.distributed import add_encoded
    from xm_integrations.errors import IndexModelMismatchError
    from xm_integrations.index import LanceDBIndex
    from xm_integrations.index.record import IndexModelRecord
    from xm_integrations.testing import build_tiny_colbert_xm

    passages = corpus(120, seed=25)
    run_driver(cluster, tmp_path, kind="encode", model=str(tiny_colbert_xm),
               corpus=write_jsonl(tmp_path / "corpus.jsonl", passages), output=tmp_path / "encoded",
               options={"language": "auto"})
    index = LanceDBIndex(tmp_path / "from-files")  # no model: the record comes from the files
    result = add_encoded(index, tmp_path / "encoded")
    assert (result.added, len(index), index.record) == (120, 120, IndexModelRecord.from_model(model))
    codes = model._resolve_input_languages([p.get("language") or "auto" for p in passages], len(passages),
                                           lambda positions: [passages[i]["text"] for i in positions])
    documents = [v.numpy().astype(np.float16).astype(np.float32)
                 for v in model.encode_document([p["text"] for p in passages], language=codes)]
    queries = [q.numpy() for q in model.encode_query(QUERIES, language="en")]
    expected = top_ids(reference_scores(queries, documents), [p["id"] for p in passages], 5)
    searched = LanceDBIndex(tmp_path / "from-files", model=model).search(QUERIES, language="en", top_k=5, exact=True)
    assert [[h["corpus_id"] for h in hits] for hits in searched] == expected
    other = LanceDBIndex(tmp_path / "other", model=type(model)(str(build_tiny_colbert_xm(tmp_path / "s1", seed=1)),
                                                                 device="cpu"))
    other.add_documents(passages[:3], language="auto")
    with pytest.raises(IndexModelMismatchError, match="fingerprint"):
        add_encoded(other, tmp_path / "encoded")
    assert len(other) == 3
