"""``xm-integrations index`` and ``search --index``: exact top-k against NumPy MaxSim, recall, filters, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.index.reference import reference_scores, top_ids
from xm_integrations import ColBERTXM
from xm_integrations.cli import main
from xm_integrations.testing import build_tiny_colbert_xm, synthetic_passages

pytest.importorskip("lancedb", reason="the lancedb extra is not installed (pip install 'xm-integrations[lancedb]')")

CORPUS = synthetic_passages(1500, seed=7)
QUERIES = ["Eiffel Tower Paris 1889", "Photosynthese Sonnenlicht Zucker", "green tea caffeine coffee"]


def _write_corpus(path, passages) -> None:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages), encoding="utf-8")


def _run(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")], captured.err


@pytest.fixture(scope="module")
def reference(tiny_colbert_xm):
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    documents = model.encode_document([p["text"] for p in CORPUS], language=[p["language"] for p in CORPUS])
    queries = model.encode_query(QUERIES, language="en")
    return reference_scores([q.numpy() for q in queries], [d.numpy().astype(np.float16).astype(np.float32) for d in documents])


@pytest.fixture(scope="module")
def cli_index(tiny_colbert_xm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-index")
    _write_corpus(folder / "corpus.jsonl", CORPUS)
    code = main(["index", str(folder / "corpus.jsonl"), "--index", str(folder / "index"), "--model", str(tiny_colbert_xm),
                 "--no-progress", "--chunk-size", "400"])
    assert code == 0
    return folder / "index"


def _search(capsys, index, *extra: str) -> list[list[str]]:
    argv = ["search", "--index", str(index), "--language", "en", "--format", "jsonl", "--no-progress", *extra]
    for query in QUERIES:
        argv += ["-q", query]
    code, rows, err = _run(capsys, *argv)
    assert code == 0, err
    return [[row["id"] for row in rows if row["query_index"] == i] for i in range(len(QUERIES))]


def test_cli_exact_search_returns_the_brute_force_top_k(cli_index, reference, capsys):
    assert _search(capsys, cli_index, "--exact", "--top-k", "10") == top_ids(reference, [p["id"] for p in CORPUS], 10)


def test_cli_default_search_reaches_the_recall_target(cli_index, reference, capsys):
    expected = top_ids(reference, [p["id"] for p in CORPUS], 10)
    found = _search(capsys, cli_index, "--top-k", "10")
    assert np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected)]) >= 0.95


def test_cli_where_filters_on_metadata_and_language(cli_index, reference, capsys):
    keep = [j for j, p in enumerate(CORPUS) if p["language"] == "de_DE" and p["year"] < 2005]
    expected = top_ids(reference[:, keep], [CORPUS[j]["id"] for j in keep], 3)
    assert _search(capsys, cli_index, "--exact", "--top-k", "3", "--where", "language = 'de_DE' AND year < 2005") == expected
    code, rows, _ = _run(capsys, "search", "--index", str(cli_index), "-q", QUERIES[0], "--language", "en", "--top-k", "1",
                         "--where", "source = 'news'", "--format", "jsonl", "--no-progress")
    assert code == 0 and rows[0]["metadata"]["source"] == "news" and rows[0]["text"]


def test_cli_bad_line_keeps_committed_chunks_and_a_rerun_finishes(tiny_colbert_xm, tmp_path, capsys):
    passages = CORPUS[:250]
    lines = [json.dumps(p) for p in passages]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:230] + ["{not json"] + lines[230:]) + "\n", encoding="utf-8")
    argv = ["index", str(broken), "--index", str(tmp_path / "index"), "--model", str(tiny_colbert_xm), "--no-progress",
            "--chunk-size", "100"]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "broken.jsonl:231: not valid JSON" in err and "keeps the 200 passage(s) committed" in err
    _write_corpus(broken, passages)
    code, _, err = _run(capsys, *argv[:-2])
    assert code == 0 and "50 added, 0 updated, 200 skipped; 250 passages" in err


@pytest.mark.parametrize("argv, message", [
    (["search", "CORPUS", "--index", "INDEX", "-q", "x"], "not both"),
    (["search", "CORPUS", "--where", "year > 1", "-q", "x"], "--where and --exact need --index"),
    (["search", "--index", "MISSING", "-q", "x"], "no index at"),
    (["search", "--index", "INDEX", "-q", "x", "--language", "en", "--where", "colour = 'red'"], "No field named colour"),
    (["index", "CORPUS", "--index", "FOREIGN"], "not an xm-integrations index"),
])
def test_cli_bad_input_exits_2_with_one_line(cli_index, tmp_path, capsys, argv, message):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    _write_corpus(tmp_path / "corpus.jsonl", CORPUS[:3])
    names = {"CORPUS": str(tmp_path / "corpus.jsonl"), "INDEX": str(cli_index), "MISSING": str(tmp_path / "missing"),
             "FOREIGN": str(tmp_path / "foreign")}
    code, _, err = _run(capsys, *[names.get(arg, arg) for arg in argv], "--no-progress")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_refuses_another_model(cli_index, tmp_path, capsys):
    other = build_tiny_colbert_xm(tmp_path / "other", dim=16)
    code, _, err = _run(capsys, "search", "--index", str(cli_index), "-q", "x", "--model", str(other), "--language", "en")
    assert code == 2 and "built with another encoder (dim: index 32, model 16" in err


def test_cli_non_utf8_line_is_named_and_nothing_is_created(tiny_colbert_xm, tmp_path, capsys):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("premier passage\nd\u00e9j\u00e0 vu\n".encode("latin-1"))
    code, _, err = _run(capsys, "index", str(corpus), "--index", str(tmp_path / "index"), "--model", str(tiny_colbert_xm),
                        "--language", "fr", "--no-progress")
    assert code == 2 and "latin1.txt:2: not UTF-8" in err and "iconv" in err
    assert not (tmp_path / "index").exists()  # the first chunk never completed: no folder left behind


def test_cli_vector_dtype_builds_a_float32_store_and_an_existing_index_keeps_its_own(tiny_colbert_xm, reference,
                                                                                     tmp_path, capsys):
    from xm_integrations.index import LanceDBIndex

    _write_corpus(tmp_path / "corpus.jsonl", CORPUS)
    argv = ["index", str(tmp_path / "corpus.jsonl"), "--index", str(tmp_path / "index"), "--model",
            str(tiny_colbert_xm), "--no-progress", "--chunk-size", "500"]
    code, _, err = _run(capsys, *argv, "--vector-dtype", "float32")
    assert code == 0, err
    assert LanceDBIndex(tmp_path / "index").vector_dtype == "float32"
    assert _search(capsys, tmp_path / "index", "--exact", "--top-k", "10") == top_ids(reference, [p["id"] for p in CORPUS], 10)
    code, _, err = _run(capsys, *argv, "--vector-dtype", "float16")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "stores float32 vectors" in err
    code, _, err = _run(capsys, *argv)  # without the flag: the index's own type, nothing to re-encode
    assert code == 0 and "0 added, 0 updated, 1500 skipped" in err


def test_cli_ray_options_reach_index_with_ray_and_bad_ones_exit_2(tiny_colbert_xm, tmp_path, capsys, monkeypatch):
    import xm_integrations.distributed as distributed
    from xm_integrations.index import AddResult

    seen: dict = {}

    def index_with_ray(index, records, **options):  # the cluster itself is tested in tests/distributed
        seen.update(options, passages=len(list(records)))
        return AddResult(skipped=seen["passages"])

    monkeypatch.setattr(distributed, "index_with_ray", index_with_ray)
    _write_corpus(tmp_path / "corpus.jsonl", CORPUS[:3])
    argv = ["index", str(tmp_path / "corpus.jsonl"), "--index", str(tmp_path / "index"), "--model",
            str(tiny_colbert_xm), "--no-progress", "--ray", "auto", "--ray-actors", "2"]
    code, _, err = _run(capsys, *argv, "--ray-gpus-per-actor", "0.5", "--ray-cpus-per-actor", "4")
    assert code == 0, err
    assert (seen["num_actors"], seen["num_gpus"], seen["num_cpus"], seen["address"], seen["passages"]) == \
        (2, 0.5, 4.0, "auto", 3)
    for flag in ("--ray-gpus-per-actor", "--ray-cpus-per-actor"):
        for bad in ("0", "-1", "half"):
            with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
                main([*argv, flag, bad])
            err = capsys.readouterr().err
            assert exit_info.value.code == 2 and f"{flag}: must be a positive number" in err
