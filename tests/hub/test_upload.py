"""Upload end to end against a loopback stand-in for the Hub that records what HfApi sends."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from tests.hub.hub_fixtures import (  # noqa: F401
    SMALL_LANGUAGES,
    TOKEN,
    colbert_xm_fr,
    mono_xm_fr,
    mono_xm_small,
    validate_once,
)
from tests.hub.hub_server import FakeHub
from tests.paths import REPO_ROOT
from xm_integrations.hub import UploadError, ValidationError, push_to_hub
from xm_integrations.hub.upload import MissingTokenError
from xm_integrations.testing import build_tiny_colbert_xm


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with its sha256, to prove a folder was left untouched."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A running fake Hub; huggingface_hub's offline switch (set for the whole suite) is lifted for it only."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub then logs every request as a curl command
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")  # its own logger stops at WARNING otherwise
    with FakeHub(token=TOKEN) as server:
        yield server


def assert_token_not_leaked(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert TOKEN[3:15] not in text  # not even a piece of it


def expected_files(folder: Path) -> set[str]:
    """What must be committed: the folder's files, with README.md (the card) whether or not the folder had one."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} | {"README.md"}


@pytest.mark.parametrize("folder_fixture", ["mono_xm_fr", "colbert_xm_fr"])
def test_upload_is_one_commit_with_the_expected_files(folder_fixture: str, request: pytest.FixtureRequest, hub: FakeHub,
                                                      capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    folder = request.getfixturevalue(folder_fixture)
    before = tree_digest(folder)

    result = push_to_hub(folder, "alice/model", endpoint=hub.endpoint, private=True)

    commits = hub.commits("alice/model")
    assert len(commits) == 1
    assert [r.endpoint for r in hub.requests].count("commit") == 1
    committed = commits[0].files
    assert set(committed) == expected_files(folder) | {".gitattributes"}
    for path, digest in before.items():
        if path != "README.md":
            assert hashlib.sha256(committed[path]).hexdigest() == digest, path
    card = ModelCard(committed["README.md"].decode())
    assert card.data.language[:3] == ["en", "id", "vi"]
    assert result.changed and result.commit_url.endswith(commits[0].oid)
    # The repo was created private, with the token from HF_TOKEN on every request.
    create = next(r for r in hub.requests if r.endpoint == "create")
    assert b'"visibility": "private"' in create.body or b'"visibility":"private"' in create.body
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert tree_digest(folder) == before
    out, err = capsys.readouterr()
    # The log check below is not vacuous: every request was logged, with its Authorization header.
    sent = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Send: curl")]
    assert len(sent) >= len(hub.requests) and all("authorization: <TOKEN>" in line for line in sent)
    assert_token_not_leaked(out, err, caplog.text)


def test_rerunning_the_same_upload_changes_nothing(mono_xm_small: Path, validate_once: None, hub: FakeHub) -> None:
    first = push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    second = push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)

    assert len(hub.commits("alice/mono")) == 1
    assert [r.endpoint for r in hub.requests].count("commit") == 1
    assert first.changed and not second.changed
    # The second run asked which files exist (create answered 409, accepted) and sent no commit.
    upload_steps = [r.endpoint for r in hub.requests if r.endpoint in ("create", "validate-yaml", "preupload", "commit")]
    assert upload_steps == ["create", "validate-yaml", "preupload", "commit", "create", "validate-yaml", "preupload"]


@pytest.mark.parametrize("failing", ["commit", "validate-yaml", "create", "preupload", "info"])
def test_server_error_leaves_no_commit_and_no_local_change(failing: str, mono_xm_small: Path, validate_once: None, hub: FakeHub,
                                                           capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.utils._http as hf_http

    before = tree_digest(mono_xm_small)
    # preupload is retried by huggingface_hub on 5xx (5 retries with back-off): fail every attempt, without waiting.
    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)
    hub.fail(failing, status=500, times=6 if failing == "preupload" else 1)

    with pytest.raises(UploadError, match="nothing was committed") as error:
        push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)

    repo = hub.repos.get("alice/mono")
    assert repo is None or hub.commits("alice/mono") == []
    assert tree_digest(mono_xm_small) == before
    out, err = capsys.readouterr()
    assert_token_not_leaked(str(error.value), out, err, caplog.text)
    # The failure is transient: the same call then succeeds with one commit.
    push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    assert len(hub.commits("alice/mono")) == 1


def test_transient_preupload_error_is_retried_into_one_commit(mono_xm_small: Path, validate_once: None, hub: FakeHub,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)
    hub.fail("preupload", status=503, times=2)
    assert push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint).changed
    assert [r.endpoint for r in hub.requests].count("preupload") == 3
    assert len(hub.commits("alice/mono")) == 1


def test_token_echoed_by_the_server_is_redacted(mono_xm_small: Path, validate_once: None, hub: FakeHub,
                                                capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    """A proxy or server that echoes the Authorization header in its error: the token still appears nowhere."""
    from xm_integrations.cli import main

    hub.fail("commit", status=400, message=f"Bad request: header Authorization: Bearer {TOKEN}")
    with pytest.raises(UploadError) as error:
        push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    assert "Bearer hf_***" in str(error.value)  # the server's message is kept, the token is not
    hub.fail("commit", status=400, message=f"Bad request: header Authorization: Bearer {TOKEN}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", hub.endpoint)
        assert main(["push", str(mono_xm_small), "alice/mono"]) == 1
    out, err = capsys.readouterr()
    assert "Bearer hf_***" in err
    assert_token_not_leaked(str(error.value), out, err, caplog.text)
    assert hub.commits("alice/mono") == []


def test_commit_failure_after_files_were_sent_commits_none_of_them(mono_xm_small: Path, validate_once: None, hub: FakeHub) -> None:
    hub.fail("commit", status=500)
    with pytest.raises(UploadError):
        push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    commit_request = next(r for r in hub.requests if r.endpoint == "commit")
    sent = {line["value"]["path"] for line in commit_request.ndjson()[1:]}
    assert sent == expected_files(mono_xm_small)  # every file was in the failed request...
    assert set(hub.repos["alice/mono"].files("main")) == {".gitattributes"}  # ...and none of them landed


def test_rerunning_as_a_pull_request_opens_none_when_nothing_changed(mono_xm_small: Path, validate_once: None,
                                                                    hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    from xm_integrations.cli import main

    push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    again = push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint, create_pr=True)
    assert not again.changed and again.pr_url is None and again.commit_url is None
    assert hub.repos["alice/mono"].pull_requests == [] and len(hub.commits("alice/mono")) == 1

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", hub.endpoint)
        assert main(["push", str(mono_xm_small), "alice/mono", "--create-pr"]) == 0
    assert "already holds exactly these files; nothing was committed" in capsys.readouterr().out
    assert hub.repos["alice/mono"].pull_requests == []


@pytest.mark.parametrize("pickled", ["pytorch_model.bin", "training_args.bin", "optimizer.pt", "1_Dense/weights.pkl"])
def test_pickled_files_are_never_published(pickled: str, mono_xm_small: Path, hub: FakeHub, tmp_path: Path) -> None:
    """Whoever loads the repo must never unpickle: a folder with pickles is refused before validation and requests."""
    import shutil

    from xm_integrations.hub import ModelFolderError

    folder = Path(shutil.copytree(mono_xm_small, tmp_path / "model"))
    (folder / pickled).parent.mkdir(parents=True, exist_ok=True)
    (folder / pickled).write_bytes(b"\x80\x04K\x01.")  # pickle.dumps(1)
    for dry_run in (None, tmp_path / "preview"):
        with pytest.raises(ModelFolderError, match=f"pickled files \\({pickled}\\)"):
            push_to_hub(folder, "alice/mono", endpoint=hub.endpoint, dry_run_dir=dry_run)
    assert hub.requests == [] and not (tmp_path / "preview").exists()


def test_weights_must_be_safetensors(mono_xm_small: Path, hub: FakeHub, tmp_path: Path) -> None:
    import shutil

    from xm_integrations.hub import ModelFolderError

    folder = Path(shutil.copytree(mono_xm_small, tmp_path / "model"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="no safetensors weights"):
        push_to_hub(folder, "alice/mono", endpoint=hub.endpoint)
    assert hub.requests == []


def test_raw_colbert_ai_checkpoint_mismatch_uploads_nothing(tmp_path: Path, hub: FakeHub) -> None:
    """A genuine mismatch: stock MultiVectorEncoder does not encode a colbert-ai checkpoint as colbert-ai did."""
    raw = build_tiny_colbert_xm(tmp_path / "raw", languages=SMALL_LANGUAGES, default_language="fr_XX")
    with pytest.raises(ValidationError, match="MISMATCH MultiVectorEncoder") as error:
        push_to_hub(raw, "alice/raw", endpoint=hub.endpoint)
    assert "xm-integrations convert" in str(error.value)
    assert hub.requests == []


def test_mono_xm_output_mismatch_uploads_nothing(mono_xm_small: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores of ours that drift by 1e-3 from the stock CrossEncoder's are refused."""
    from xm_integrations.models.mono_xm import MonoXM

    original = MonoXM.predict
    monkeypatch.setattr(MonoXM, "predict", lambda self, *a, **k: original(self, *a, **k) + 1e-3)
    with pytest.raises(ValidationError, match="MISMATCH sentence-transformers CrossEncoder"):
        push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    assert hub.requests == []


def test_folder_without_default_language_uploads_nothing(tiny_mono_xm: Path, hub: FakeHub) -> None:
    with pytest.raises(ValidationError, match="Input language unknown"):
        push_to_hub(tiny_mono_xm, "alice/mono", endpoint=hub.endpoint)
    assert hub.requests == []


def test_pull_request_and_branch(mono_xm_small: Path, validate_once: None, hub: FakeHub) -> None:
    result = push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint, create_pr=True)
    repo = hub.repos["alice/mono"]
    assert result.pr_url.endswith("/alice/mono/discussions/1")
    assert set(repo.files("main")) == {".gitattributes"}  # main untouched
    assert "README.md" in repo.files("refs/pr/1")

    push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint, revision="dev")
    assert "README.md" in repo.files("dev") and set(repo.files("main")) == {".gitattributes"}


def test_offline_mode_is_explained(mono_xm_small: Path) -> None:
    """The suite runs with HF_HUB_OFFLINE=1 (conftest); an upload then stops before validating anything."""
    with pytest.raises(UploadError, match="HF_HUB_OFFLINE is set"):
        push_to_hub(mono_xm_small, "alice/mono", endpoint="http://127.0.0.1:9", token=TOKEN)


def test_unreachable_hub_is_an_upload_error(mono_xm_small: Path, validate_once: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(UploadError, match="127.0.0.1:9 failed, nothing was committed: ConnectError"):
        push_to_hub(mono_xm_small, "alice/mono", endpoint="http://127.0.0.1:9", token=TOKEN)


def test_token_from_hf_auth_login_file(mono_xm_small: Path, validate_once: None, hub: FakeHub,
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    """Without HF_TOKEN, the token saved by `hf auth login` (HF_TOKEN_PATH) is used, and still never shown."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    (tmp_path / "token").write_text(TOKEN + "\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)
    assert hub.requests and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    out, err = capsys.readouterr()
    assert_token_not_leaked(out, err, caplog.text)


def test_missing_token_is_explained(mono_xm_small: Path, validate_once: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(MissingTokenError, match="hf auth login"):
        push_to_hub(mono_xm_small, "alice/mono", endpoint="http://127.0.0.1:9")


# ----------------------------------------------------------------------------------------------
# Dry run
# ----------------------------------------------------------------------------------------------


def test_dry_run_writes_exactly_what_is_committed(mono_xm_small: Path, validate_once: None, hub: FakeHub, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    dry = push_to_hub(mono_xm_small, "alice/mono", dry_run_dir=out)
    assert hub.requests == []  # a dry run talks to no one
    push_to_hub(mono_xm_small, "alice/mono", endpoint=hub.endpoint)

    committed = {path: data for path, data in hub.repos["alice/mono"].files("main").items() if path != ".gitattributes"}
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert written == committed
    assert {f.path_in_repo: f.size for f in dry.files} == {path: len(data) for path, data in committed.items()}


def test_cli_dry_run_lists_every_file_with_its_size(mono_xm_small: Path, validate_once: None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from xm_integrations.cli import main

    out_dir = tmp_path / "preview"
    assert main(["push", str(mono_xm_small), "alice/mono", "--dry-run", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "Dry run: nothing uploaded" in out
    written = {p.relative_to(out_dir).as_posix(): p.stat().st_size for p in out_dir.rglob("*") if p.is_file()}
    assert set(written) == expected_files(mono_xm_small)
    listed = dict(re.findall(r"^  (\S+)\s+(\d+ B|[\d.]+ [KMG]iB)(?:  \(\d+ files\))?$", out, re.MULTILINE))
    assert set(listed) == set(written) | {"total"}

    def human(size: int) -> str:  # written out independently of format_file_table
        return f"{size} B" if size < 1024 else (f"{size / 1024:.1f} KiB" if size < 1024**2 else f"{size / 1024**2:.1f} MiB")

    for path, size in written.items():  # sizes of the files as written
        assert listed[path] == human(size), path
    assert listed["total"] == human(sum(written.values()))
    assert f"({len(written)} files)" in out


def test_failed_dry_run_leaves_nothing_behind(mono_xm_small: Path, validate_once: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import xm_integrations.hub.upload as upload

    calls = []

    def failing_copy(source, target):
        calls.append(source)
        if len(calls) == 3:
            raise OSError("disk full")
        return shutil.copyfile(source, target)

    monkeypatch.setattr(upload.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        push_to_hub(mono_xm_small, "alice/mono", dry_run_dir=tmp_path / "preview")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a partial folder


def test_dry_run_refuses_a_non_empty_folder_or_one_inside_the_model(mono_xm_small: Path, validate_once: None, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        push_to_hub(mono_xm_small, "alice/mono", dry_run_dir=tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="inside the model folder"):
        push_to_hub(mono_xm_small, "alice/mono", dry_run_dir=mono_xm_small / "preview")
    assert not (mono_xm_small / "preview").exists()


# ----------------------------------------------------------------------------------------------
# The command line, in its own process, with the token in the environment only
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_push_in_its_own_process_never_prints_the_token(mono_xm_small: Path, tmp_path: Path) -> None:
    """The script as users run it: token and endpoint from the environment, debug logging on."""
    with FakeHub(token=TOKEN) as hub:
        env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0",
               "HF_DEBUG": "1", "HF_HUB_VERBOSITY": "debug"}
        command = [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), str(mono_xm_small), "alice/cli"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(hub.commits("alice/cli")) == 1
        assert "README.md" in done.stdout and "config.json" in done.stdout  # the file listing
        assert "Committed to" in done.stdout
        assert "Send: curl" in done.stderr and "authorization: <TOKEN>" in done.stderr  # debug logging was on
        assert_token_not_leaked(done.stdout, done.stderr)


def test_cli_push_options_private_revision_eval_results(mono_xm_small: Path, hub: FakeHub, validate_once: None,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """MODEL_DIR REPO_ID --private --revision R --eval-results FILE, as the command line passes them."""
    import json

    from xm_integrations.cli import main

    results = tmp_path / "results.json"
    results.write_text(json.dumps({
        "format": "xm-integrations-eval/1", "model": "m", "task": "reranking",
        "dataset": {"name": "made", "id": None, "split": "test"}, "metrics": ["mrr@10"],
        "per_language": {"fr": {"mrr@10": 0.5, "num_queries": 2}}, "average": {"mrr@10": 0.5, "num_languages": 1},
    }))
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    assert main(["push", str(mono_xm_small), "alice/cli", "--private", "--revision", "dev",
                 "--eval-results", str(results)]) == 0
    repo = hub.repos["alice/cli"]
    assert repo.private is True
    assert set(repo.files("main")) == {".gitattributes"} and "config.json" in repo.files("dev")
    card = ModelCard(repo.files("dev")["README.md"].decode())
    assert [(r.dataset_name, r.metric_type, r.metric_value) for r in card.data.eval_results] == [
        ("made (fr)", "mrr_at_10", 0.5)]
    assert "Committed to" in capsys.readouterr().out


def test_cli_push_failure_is_one_clear_line(mono_xm_small: Path, hub: FakeHub, validate_once: None,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from xm_integrations.cli import main

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    hub.fail("commit", status=500)
    assert main(["push", str(mono_xm_small), "alice/cli"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("xm-integrations push: error: Upload to alice/cli at http://127.0.0.1:")
    assert "failed, nothing was committed: HfHubHTTPError" in err
    assert "Traceback" not in err
    assert_token_not_leaked(out, err)
    assert hub.commits("alice/cli") == []
