"""``xm-integrations search``: results against NumPy MaxSim on colbert-ai's vectors and plain-transformers Mono-XM."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.models.test_colbert_xm import ARRAYS, REFERENCE, _reference_documents, numpy_maxsim
from xm_integrations.cli import main
from xm_integrations.testing import TINY_LANGUAGES

DOCUMENTS = REFERENCE["documents"]


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n"
                            for i, text in enumerate(DOCUMENTS)), encoding="utf-8")
    return path


def _run(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    return code, rows, captured.err


def _expected_maxsim(query_index: int, language: str) -> list[float]:
    query = ARRAYS[f"{language}.query_embeddings"][query_index]
    return [numpy_maxsim(query, document) for document in _reference_documents(ARRAYS, language)]


def test_search_ranks_by_maxsim_of_colbert_ais_vectors(tiny_colbert_xm, corpus, capsys):
    queries = REFERENCE["queries"][:2]
    code, rows, _ = _run(capsys, "search", str(corpus), "--model", str(tiny_colbert_xm), "-q", queries[0],
                         "-q", queries[1], "--language", "fr", "--top-k", "3", "--format", "jsonl", "--no-progress")
    assert code == 0
    for query_index, query in enumerate(queries):
        hits = [row for row in rows if row["query_index"] == query_index]
        expected = _expected_maxsim(query_index, "fr_XX")
        order = sorted(range(len(expected)), key=lambda i: (-expected[i], i))[:3]
        assert [hit["index"] for hit in hits] == order
        assert [hit["id"] for hit in hits] == [f"doc-{i}" for i in order]
        assert [hit["rank"] for hit in hits] == [1, 2, 3]
        np.testing.assert_allclose([hit["score"] for hit in hits], [expected[i] for i in order], rtol=1e-5, atol=1e-4)
        assert all(hit["query"] == query and hit["query_language"] == "fr_XX" and hit["language"] == "fr_XX"
                   for hit in hits)
        assert all(hit["text"] == DOCUMENTS[hit["index"]] for hit in hits)


def test_three_languages_with_auto(tiny_colbert_xm, corpus, capsys):
    queries = ["When was the Eiffel Tower built?", "Combien de caféine dans le thé vert ?", "Was ist Photosynthese?"]
    code, rows, _ = _run(capsys, "search", str(corpus), "--model", str(tiny_colbert_xm), *sum((["-q", q] for q in queries), []),
                         "--language", "auto", "--top-k", "5", "--no-progress")
    assert code == 0
    assert [row["query_language"] for row in rows if row["rank"] == 1] == ["en_XX", "fr_XX", "de_DE"]
    languages = {row["index"]: row["language"] for row in rows}
    assert (languages[0], languages[1], languages[2]) == ("fr_XX", "de_DE", "zh_CN")
    # The Chinese passage under its detected adapter, against the German query under its own.
    german = next(row for row in rows if row["query_index"] == 2 and row["index"] == 2)
    assert queries[2] == REFERENCE["queries"][1]
    query = ARRAYS["de_DE.query_embeddings"][1]
    assert german["score"] == pytest.approx(numpy_maxsim(query, _reference_documents(ARRAYS, "zh_CN")[2]), rel=1e-5,
                                            abs=1e-4)


def test_rerank_with_mono_xm_matches_plain_transformers(tiny_colbert_xm, tiny_mono_xm, corpus, capsys):
    query = REFERENCE["queries"][1]
    code, rows, _ = _run(capsys, "search", str(corpus), "--model", str(tiny_colbert_xm), "-q", query,
                         "--language", "de", "--rerank", "--reranker", str(tiny_mono_xm), "--candidates", "4",
                         "--top-k", "2", "--no-progress")
    assert code == 0 and len(rows) == 2
    maxsim = _expected_maxsim(1, "de_DE")
    candidates = sorted(range(len(maxsim)), key=lambda i: (-maxsim[i], i))[:4]
    tokenizer = AutoTokenizer.from_pretrained(tiny_mono_xm)
    cross = AutoModelForSequenceClassification.from_pretrained(tiny_mono_xm).eval()
    features = tokenizer([query] * 4, [DOCUMENTS[i] for i in candidates], padding=True, truncation=True,
                         return_tensors="pt")
    with torch.no_grad():
        logits = cross(**features, lang_ids=torch.full((4,), TINY_LANGUAGES.index("de_DE"))).logits[:, 0]
    probabilities = torch.sigmoid(logits).tolist()
    best = sorted(zip(probabilities, candidates), key=lambda pair: -pair[0])[:2]
    assert [row["index"] for row in rows] == [index for _, index in best]
    np.testing.assert_allclose([row["rerank_score"] for row in rows], [p for p, _ in best], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([row["score"] for row in rows], [maxsim[i] for _, i in best], rtol=1e-5, atol=1e-4)


def test_table_output_and_per_passage_languages_from_stdin(tiny_colbert_xm, capsys, monkeypatch):
    lines = [json.dumps({"text": DOCUMENTS[0], "language": "fr"}), json.dumps({"text": DOCUMENTS[2], "language": "zh"})]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code = main(["search", "--model", str(tiny_colbert_xm), "-q", "光合作用", "--query-language", "zh", "--format",
                 "table", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == "query 1 [zh_CN]: 光合作用"
    assert "rank" in out.splitlines()[1] and "maxsim" in out.splitlines()[1]
    assert "fr_XX" in out and "zh_CN" in out


@pytest.mark.parametrize(
    ("corpus_text", "extra", "message"),
    [
        ("", [], "holds no passage"),
        ("\n\n   \n", [], "holds no passage"),
        ('{"text": "ok"}\n{"id": 3}\n', [], ':2: expected a JSON string or an object with a string "text"'),
        ("a passage\n", ["-q", ""], "query 1 (--query) is empty"),
        ("a passage\n", ["-q", "fine", "-q", "   "], "query 2 (--query) is empty"),
    ],
)
def test_bad_input_exits_2_with_a_message(tiny_colbert_xm, tmp_path, capsys, corpus_text, extra, message):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    queries = extra or ["-q", "a query"]
    code, rows, err = _run(capsys, "search", str(path), "--model", str(tiny_colbert_xm), *queries, "--language", "fr")
    assert code == 2 and not rows
    assert message in err


def test_missing_corpus_file_and_language(tiny_colbert_xm, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    code, _, err = _run(capsys, "search", str(missing), "--model", str(tiny_colbert_xm), "-q", "q")
    assert code == 2 and str(missing) in err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one passage\n", encoding="utf-8")
    code, _, err = _run(capsys, "search", str(corpus), "--model", str(tiny_colbert_xm), "-q", "q", "--no-progress")
    assert code == 2 and "has no default language: pass --language" in err
    code, _, err = _run(capsys, "search", str(corpus), "--model", str(tiny_colbert_xm), "-q", "q", "-l", "Klingon",
                        "--no-progress")
    assert code == 2 and "Unknown language 'Klingon'" in err


def test_broken_checkpoint_exits_2_naming_the_file(tiny_colbert_xm, tmp_path, capsys):
    import shutil

    broken = shutil.copytree(tiny_colbert_xm, tmp_path / "broken")
    (broken / "artifact.metadata").write_text("{oops")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one passage\n", encoding="utf-8")
    code, _, err = _run(capsys, "search", str(corpus), "--model", str(broken), "-q", "q", "-l", "fr")
    # a broken --model folder is bad input: exit 2, one line naming the file
    assert code == 2 and str(broken / "artifact.metadata") in err and "not valid JSON" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
