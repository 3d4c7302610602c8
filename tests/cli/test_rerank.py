"""``xm-integrations rerank``: scores against plain transformers with explicit ``lang_ids``, input forms, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, XmodForSequenceClassification

from tests.paths import REPO_ROOT
from xm_integrations.cli import main
from xm_integrations.cli.rerank import DEFAULT_MODEL
from xm_integrations.testing.corpus import SAMPLE_PASSAGES

DATA = REPO_ROOT / "xm_integrations" / "data"
DEMO_QUERY = DATA / "demo_query.txt"
DEMO_PASSAGES = DATA / "demo_passages.jsonl"
LANGUAGE_OF = {text: code for code, texts in SAMPLE_PASSAGES.items() for text in texts}


@pytest.fixture(scope="module")
def reference(tiny_mono_xm: Path):
    """``sigmoid(XmodForSequenceClassification(**inputs, lang_ids=...).logits)``, fp32."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_mono_xm)
    model = XmodForSequenceClassification.from_pretrained(tiny_mono_xm, dtype=torch.float32).eval()

    def scores(query: str, passages: list[str], languages: list[str]) -> np.ndarray:
        inputs = tokenizer([query] * len(passages), passages, padding=True, truncation=True, max_length=512,
                           return_tensors="pt")
        ids = torch.tensor([model.config.languages.index(code) for code in languages])
        with torch.no_grad():
            return torch.sigmoid(model(**inputs, lang_ids=ids).logits.view(-1)).numpy()

    return scores


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["rerank", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_sample_with_auto_languages(capsys, tiny_mono_xm, reference) -> None:
    code, out, _ = run_cli(capsys, "--model", str(tiny_mono_xm), "--query-file", str(DEMO_QUERY),
                           str(DEMO_PASSAGES), "--language", "auto", "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    demo = [json.loads(line) for line in DEMO_PASSAGES.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(demo) >= 12 and len({LANGUAGE_OF[p["text"]] for p in demo}) >= 10
    assert [row["rank"] for row in rows] == list(range(1, len(demo) + 1))
    query = DEMO_QUERY.read_text(encoding="utf-8").strip()
    expected = reference(query, [p["text"] for p in demo], [LANGUAGE_OF[p["text"]] for p in demo])
    assert [row["index"] for row in rows] == list(np.argsort(-expected, kind="stable"))
    for row in rows:
        passage = demo[row["index"]]
        assert row["id"] == passage["id"] and row["text"] == passage["text"]
        assert row["language"] == LANGUAGE_OF[passage["text"]]
        assert row["score"] == pytest.approx(float(expected[row["index"]]), abs=1e-5)


def test_plain_lines_from_stdin_one_language(capsys, monkeypatch, tiny_mono_xm, reference) -> None:
    passages = SAMPLE_PASSAGES["fr_XX"][:3]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join([passages[0], "", passages[1], "   ", passages[2]]) + "\n"))
    code, out, _ = run_cli(capsys, "-m", str(tiny_mono_xm), "-q", "Combien de caféine ?", "--language", "French",
                           "--format", "jsonl", "--top-k", "2")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = reference("Combien de caféine ?", passages, ["fr_XX"] * 3)
    assert len(rows) == 2 and [row["index"] for row in rows] == list(np.argsort(-expected)[:2])
    assert all(row["language"] == "fr_XX" and "id" not in row for row in rows)
    assert [row["score"] for row in rows] == pytest.approx(sorted(expected, reverse=True)[:2], abs=1e-5)
    # Guard: English adapters would give other scores.
    assert np.abs(expected - reference("Combien de caféine ?", passages, ["en_XX"] * 3)).min() > 1e-3


def test_per_line_languages_override_the_option(capsys, tmp_path, tiny_mono_xm, reference) -> None:
    lines = [{"text": "alpha", "language": "de"}, {"text": "beta"}, "gamma", {"text": "", "language": "zh-TW"}]
    path = tmp_path / "passages.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "-m", str(tiny_mono_xm), "-q", "query", str(path), "-l", "es", "--format", "jsonl")
    assert code == 0
    rows = sorted((json.loads(line) for line in out.splitlines()), key=lambda row: row["index"])
    languages = ["de_DE", "es_XX", "es_XX", "zh_TW"]
    assert [row["language"] for row in rows] == languages
    expected = reference("query", ["alpha", "beta", "gamma", ""], languages)
    assert [row["score"] for row in rows] == pytest.approx(list(expected), abs=1e-5)


def test_table_output_and_progress_bar(capsys, tiny_mono_xm) -> None:
    code, out, err = run_cli(capsys, "-m", str(tiny_mono_xm), "--query-file", str(DEMO_QUERY), str(DEMO_PASSAGES),
                             "-l", "auto", "--format", "table", "--batch-size", "4")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "score", "language", "id", "passage"] and len(lines) == 17
    assert lines[1].split()[0] == "1" and lines[-1].split()[0] == "16"
    assert "Pairs" in err  # more passages than --batch-size: the fast path's progress bar on stderr
    code, _, err = run_cli(capsys, "-m", str(tiny_mono_xm), "--query-file", str(DEMO_QUERY), str(DEMO_PASSAGES),
                           "-l", "auto", "--batch-size", "4", "--no-progress")
    assert code == 0 and "Pairs" not in err


def test_default_model_is_the_hub_repo(capsys, hub_cache, reference) -> None:
    assert DEFAULT_MODEL == "antoinelouis/mono-xm"
    code, out, _ = run_cli(capsys, "-q", "query", str(DEMO_PASSAGES), "-l", "fr", "--format", "jsonl", "-k", "1")
    assert code == 0
    row = json.loads(out)
    texts = [json.loads(line)["text"] for line in DEMO_PASSAGES.read_text(encoding="utf-8").splitlines()]
    assert row["score"] == pytest.approx(float(reference("query", texts, ["fr_XX"] * len(texts)).max()), abs=1e-5)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-l", "Klingon"], "a passage\n", "Unknown language 'Klingon'"),
        ([], "a passage\n", "has no default language: pass --language"),
        (["-l", "fr"], '{"text": "ok"}\n{"text": 3}\n', '<stdin>:2: expected a JSON string or an object with a string "text"'),
        (["-l", "fr"], '{"text": "ok"}\n{not json\n', "<stdin>:2: not valid JSON"),
        (["-l", "fr", "/nonexistent/passages.txt"], "", "cannot read passages"),
    ],
)
def test_errors_name_the_problem(capsys, monkeypatch, tiny_mono_xm, args, stdin, message) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, out, err = run_cli(capsys, "-m", str(tiny_mono_xm), "-q", "query", *args)
    assert code == 2 and out == "" and message in err


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "xm_integrations", "rerank", "--help"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and "--language" in result.stdout and "antoinelouis/mono-xm" in result.stdout


def test_no_passages_on_a_terminal(capsys, monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    code, out, err = run_cli(capsys, "-q", "query", "-l", "fr")
    assert code == 2 and "no passages" in err and out == ""
