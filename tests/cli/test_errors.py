"""Every sub-command, run as a user runs it (a subprocess), on bad files, bad flags and a closed pipe.

The convention checked everywhere: exit 2 for bad input or arguments, one ``xm-integrations
COMMAND: error: ...`` line on stderr, never a traceback; a reader closing the pipe ends the command
quietly with exit 0. The processes run in parallel threads, since each one imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def _run(*args: str, stdin: bytes | None = None) -> Outcome:
    result = subprocess.run([sys.executable, "-m", "xm_integrations", *args], input=stdin, capture_output=True,
                            timeout=300, env={**os.environ, "COLUMNS": "200"})
    return Outcome(result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"))


def _run_all(cases: dict[str, tuple]) -> dict[str, Outcome]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, *args) for name, args in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def _assert_usage_error(outcome: Outcome, *fragments: str, command: str) -> None:
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2, outcome
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith(f"xm-integrations {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-files")
    latin1 = root / "latin1.txt"
    latin1.write_bytes("Le thé vert\nLa tour Eiffel\n".encode("latin-1"))
    bom = root / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps({"text": f"passage {i}", "id": f"p{i}"})
                                                  for i in range(3)).encode("utf-8") + b"\n")
    escapes = root / "escapes.txt"
    escapes.write_text("un texte \x1b[2J\x1b[31mrouge\x07 et \u202eecrevne\n", encoding="utf-8")
    empty = root / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    query = root / "query.txt"
    query.write_text("Quand la tour Eiffel a-t-elle été construite ?\n", encoding="utf-8")
    many = root / "many.txt"
    many.write_text("".join(f"La tour Eiffel a été construite en {1800 + i} à Paris, dit-on.\n" for i in range(3000)),
                    encoding="utf-8")
    busy = root / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    return {"latin1": latin1, "bom": bom, "escapes": escapes, "empty": empty, "query": query, "many": many,
            "busy": busy, "root": root}


def test_rerank_and_search_bad_input(files, tiny_mono_xm: Path, tiny_colbert_xm: Path) -> None:
    mono, colbert = ("--model", str(tiny_mono_xm)), ("--model", str(tiny_colbert_xm))
    outcomes = _run_all({
        "latin1": ("rerank", *mono, "-q", "q", str(files["latin1"]), "-l", "fr"),
        "latin1-query": ("rerank", *mono, "--query-file", str(files["latin1"]), str(files["bom"]), "-l", "fr"),
        "empty": ("rerank", *mono, "-q", "q", str(files["empty"]), "-l", "fr"),
        "missing": ("rerank", *mono, "-q", "q", str(files["root"] / "nope.txt")),
        "device-foo": ("rerank", *mono, "-q", "q", str(files["bom"]), "-l", "fr", "--device", "foo"),
        "device-cuda": ("rerank", *mono, "-q", "q", str(files["bom"]), "-l", "fr", "--device", "cuda"),
        "top-k": ("rerank", *mono, "-q", "q", str(files["bom"]), "--top-k", "zero"),
        "no-query": ("rerank", *mono, str(files["bom"])),
        "language": ("rerank", *mono, "-q", "q", str(files["bom"]), "-l", "Klingon"),
        "search-latin1": ("search", str(files["latin1"]), *colbert, "-q", "q", "-l", "fr"),
        "search-empty": ("search", str(files["empty"]), *colbert, "-q", "q", "-l", "fr"),
        "search-device": ("search", str(files["bom"]), *colbert, "-q", "q", "-l", "fr", "--device", "cuda:7"),
        "search-model": ("search", str(files["bom"]), "--model", str(files["root"]), "-q", "q", "-l", "fr"),
    })
    _assert_usage_error(outcomes["latin1"], "latin1.txt:1: not UTF-8", "iconv", command="rerank")
    _assert_usage_error(outcomes["latin1-query"], "latin1.txt:1: not UTF-8", command="rerank")
    _assert_usage_error(outcomes["empty"], "holds no passage", command="rerank")
    _assert_usage_error(outcomes["missing"], "nope.txt", command="rerank")
    _assert_usage_error(outcomes["device-foo"], "'foo' is not a torch device", command="rerank")
    _assert_usage_error(outcomes["device-cuda"], "CUDA is not available", "--device cpu", command="rerank")
    _assert_usage_error(outcomes["top-k"], "--top-k", "positive integer", command="rerank")
    _assert_usage_error(outcomes["no-query"], "-q/--query", "--help", command="rerank")
    _assert_usage_error(outcomes["language"], "Unknown language 'Klingon'", command="rerank")
    _assert_usage_error(outcomes["search-latin1"], "not UTF-8", command="search")
    _assert_usage_error(outcomes["search-empty"], "holds no passage", command="search")
    _assert_usage_error(outcomes["search-device"], "cuda:7", command="search")
    _assert_usage_error(outcomes["search-model"], "config.json is missing", command="search")


def test_bom_jsonl_is_read_as_json_lines_and_escapes_never_reach_the_table(files, tiny_mono_xm: Path) -> None:
    outcomes = _run_all({
        "bom": ("rerank", "--model", str(tiny_mono_xm), "-q", "q", str(files["bom"]), "-l", "fr", "--no-progress"),
        "escapes": ("rerank", "--model", str(tiny_mono_xm), "-q", "q", str(files["escapes"]), "-l", "fr",
                    "--format", "table", "--no-progress"),
    })
    bom = outcomes["bom"]
    assert bom.code == 0, bom.stderr
    rows = [json.loads(line) for line in bom.stdout.splitlines()]
    assert sorted(row["id"] for row in rows) == ["p0", "p1", "p2"]  # parsed as JSON lines, not as text
    assert bom.stderr == ""  # --no-progress: no "Loading weights" bar either
    table = outcomes["escapes"]
    assert table.code == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout and "\u202e" not in table.stdout
    assert "\\x1b[2J" in table.stdout and "\\u202e" in table.stdout


def test_a_closed_pipe_ends_quietly(files, tiny_mono_xm: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "xm_integrations", "rerank", "--model", str(tiny_mono_xm), "-q", "q",
         str(files["many"]), "-l", "fr", "--no-progress", "--format", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    first = process.stdout.readline()
    process.stdout.close()  # what `| head -1` does
    stderr = process.stderr.read().decode()
    code = process.wait(timeout=300)
    assert json.loads(first)["rank"] == 1
    assert code == 0 and stderr == "", stderr


def test_hub_commands_bad_arguments_exit_2(files, tiny_mono_xm: Path) -> None:
    outcomes = _run_all({
        "convert-missing": ("convert", str(files["root"] / "nope"), str(files["root"] / "out")),
        "convert-busy": ("convert", str(tiny_mono_xm), str(files["busy"]), "--language", "fr"),
        "convert-no-language": ("convert", str(tiny_mono_xm), str(files["root"] / "out2")),
        "convert-auto": ("convert", str(tiny_mono_xm), str(files["root"] / "out3"), "--language", "auto"),
        "push-repo-id": ("push", str(tiny_mono_xm), "not a repo id!", "--dry-run", str(files["root"] / "dry")),
        "push-repo-slash": ("push", str(tiny_mono_xm), "alice/bob/carol", "--dry-run", str(files["root"] / "dry")),
        "push-missing": ("push", str(files["root"] / "nope"), "alice/mono", "--dry-run", str(files["root"] / "dry")),
        "push-flag": ("push", str(tiny_mono_xm)),
        "evaluate-missing": ("evaluate", str(tiny_mono_xm), str(files["root"] / "no-dataset"), "--candidates", "run.trec"),
        "evaluate-candidates": ("evaluate", str(tiny_mono_xm), str(files["root"])),
        "evaluate-top-k": ("evaluate", str(tiny_mono_xm), str(files["root"]), "--top-k", "-1"),
    })
    _assert_usage_error(outcomes["convert-missing"], "nope", command="convert")
    _assert_usage_error(outcomes["convert-busy"], "not empty", "--overwrite", command="convert")
    _assert_usage_error(outcomes["convert-no-language"], "pass --language", command="convert")
    _assert_usage_error(outcomes["convert-auto"], "'auto' is not one adapter", command="convert")
    _assert_usage_error(outcomes["push-repo-id"], "Invalid repo id 'not a repo id!'", command="push")
    _assert_usage_error(outcomes["push-repo-slash"], "namespace/name", command="push")
    _assert_usage_error(outcomes["push-missing"], "nope", command="push")
    _assert_usage_error(outcomes["push-flag"], "repo_id", command="push")
    _assert_usage_error(outcomes["evaluate-missing"], "no-dataset", command="evaluate")
    _assert_usage_error(outcomes["evaluate-top-k"], "--top-k", command="evaluate")
    _assert_usage_error(outcomes["evaluate-candidates"], "needs --candidates", command="evaluate")
    assert not (files["root"] / "dry").exists() and not (files["root"] / "out3").exists()
    assert (files["busy"] / "keep").read_text() == "x"
