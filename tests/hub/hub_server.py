"""A loopback stand-in for the Hugging Face Hub: just enough of its HTTP API for ``HfApi`` to create a repo and commit.

Implemented from what huggingface_hub 2.4 sends (``hf_api.py``: ``create_repo``, ``create_branch``,
``repo_info``, ``_validate_yaml``; ``_commit_api.py``: ``_fetch_upload_modes``, ``_send_commit``):

* ``POST /api/repos/create`` (409 when the repo exists, which ``exist_ok=True`` accepts);
* ``POST /api/validate-yaml`` (the README's front matter must parse as YAML);
* ``POST /api/models/{repo}/preupload/{revision}``: every file is "regular" (committed inline as
  base64), and the ``oid`` of a file already there (its git blob sha1) lets the client skip it;
* ``POST /api/models/{repo}/commit/{revision}``: the NDJSON commit, applied all at once;
* ``GET /api/models/{repo}[/revision/{revision}]`` and ``POST /api/models/{repo}/branch/{branch}``.

It listens on 127.0.0.1 only, so no request leaves the machine. Every request is recorded (method,
path, query, headers, body) for the tests to inspect, and :meth:`FakeHub.fail` makes the next
request(s) to an endpoint answer with an error, to test what a client does after a failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["FakeHub", "RecordedRequest", "git_blob_sha1"]


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content, which the Hub reports as a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def endpoint(self) -> str:
        """``create``, ``validate-yaml``, ``info``, ``preupload``, ``commit``, ``revision`` or ``branch``."""
        parts = self.path.strip("/").split("/")
        if parts[:3] == ["api", "repos", "create"]:
            return "create"
        if parts[:2] == ["api", "validate-yaml"]:
            return "validate-yaml"
        if len(parts) == 4 and parts[:2] == ["api", "models"]:
            return "info"
        return parts[4] if len(parts) > 4 and parts[:2] == ["api", "models"] else "unknown"

    def ndjson(self) -> list[dict]:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool | None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)

    def files(self, revision: str) -> dict[str, bytes]:
        oid = self.branches.get(revision, revision)
        return self.commits[oid].files if oid in self.commits else {}


class FakeHub:
    """The server and its state. Use as a context manager; ``endpoint`` is the base URL for ``HfApi``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str, tuple[int, str, int]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail(self, endpoint: str, status: int = 500, message: str = "Internal Error - we're working hard to fix this",
             times: int = 1) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``status`` (and change nothing).

        huggingface_hub retries some requests (``preupload``, on 5xx) by itself: fail those more than once.
        """
        self._failures[endpoint] = (status, message, times)

    def commits(self, repo_id: str) -> list[Commit]:
        """The repo's commits, oldest first, the empty initial one excluded."""
        repo = self.repos[repo_id]
        return [commit for commit in repo.commits.values() if commit.parent is not None]

    # -- request handling ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        url = urlsplit(handler.path)
        headers = {key.lower(): value for key, value in handler.headers.items()}  # HTTP header names are case-insensitive
        request = RecordedRequest(method, unquote(url.path), parse_qs(url.query), headers, body)
        with self._lock:
            self.requests.append(request)
            status, payload, headers = self._route(request)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, request: RecordedRequest) -> tuple[int, dict, dict[str, str]]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        if request.endpoint in self._failures:
            status, message, times = self._failures.pop(request.endpoint)
            if times > 1:
                self._failures[request.endpoint] = (status, message, times - 1)
            return status, {"error": message}, {}
        parts = request.path.strip("/").split("/")
        if request.endpoint == "create":
            return self._create(json.loads(request.body))
        if request.endpoint == "validate-yaml":
            return self._validate_yaml(json.loads(request.body))
        repo_id = "/".join(parts[2:4])
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        revision = "/".join(parts[5:]) or "main"
        if request.endpoint == "preupload":
            return self._preupload(repo, revision, json.loads(request.body))
        if request.endpoint == "commit":
            return self._commit(repo, revision, request)
        if request.endpoint in ("revision", "info"):
            if revision not in repo.branches:
                return 404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"}
            head = repo.branches[revision]
            siblings = [{"rfilename": path} for path in sorted(repo.commits[head].files)]
            return 200, {"id": repo_id, "sha": head, "private": bool(repo.private), "siblings": siblings}, {}
        if request.endpoint == "branch" and request.method == "POST":
            if revision in repo.branches:
                return 409, {"error": "Reference already exists"}, {}
            repo.branches[revision] = repo.branches["main"]
            return 200, {}, {}
        return 404, {"error": f"Not implemented by the fake hub: {request.method} {request.path}"}, {}

    def _create(self, payload: dict) -> tuple[int, dict, dict[str, str]]:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": url}, {}
        repo = Repo(repo_id, private=payload.get("visibility") == "private" if "visibility" in payload else None)
        initial = Commit(oid=hashlib.sha1(repo_id.encode()).hexdigest(), parent=None, message="initial commit",
                         files={".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        repo.commits[initial.oid] = initial
        repo.branches["main"] = initial.oid
        self.repos[repo_id] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}, {}

    @staticmethod
    def _validate_yaml(payload: dict) -> tuple[int, dict, dict[str, str]]:
        content = payload["content"]
        if content.startswith("---\n"):
            try:
                metadata = yaml.safe_load(content[4:content.index("\n---", 4)])
            except (ValueError, yaml.YAMLError) as error:
                return 400, {"errors": [{"message": f"Invalid YAML: {error}"}]}, {}
            if not isinstance(metadata, dict):
                return 400, {"errors": [{"message": "Metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    @staticmethod
    def _preupload(repo: Repo, revision: str, payload: dict) -> tuple[int, dict, dict[str, str]]:
        existing = repo.files(revision)
        files = [
            {"path": file["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha1(existing[file["path"]]) if file["path"] in existing else None}
            for file in payload["files"]
        ]
        return 200, {"files": files, "commitOid": repo.branches.get(revision)}, {}

    def _commit(self, repo: Repo, revision: str, request: RecordedRequest) -> tuple[int, dict, dict[str, str]]:
        if revision not in repo.branches:
            return 404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"}
        lines = request.ndjson()
        header = lines[0]
        if header.get("key") != "header":
            return 400, {"error": "The first line must be the commit header"}, {}
        files = dict(repo.files(revision))
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return 400, {"error": f"The fake hub does not support {line['key']!r} operations"}, {}
        parent = repo.branches[revision]
        oid = hashlib.sha1(f"{parent}{header['value']['summary']}{sorted(files.items())}".encode()).hexdigest()
        repo.commits[oid] = Commit(oid=oid, parent=parent, message=header["value"]["summary"], files=files)
        pr_url = None
        if request.query.get("create_pr") == ["1"]:
            number = len(repo.pull_requests) + 1
            repo.branches[f"refs/pr/{number}"] = oid
            repo.pull_requests.append(oid)
            pr_url = f"{self.endpoint}/{repo.repo_id}/discussions/{number}"
        else:
            repo.branches[revision] = oid
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{oid}",
                     "pullRequestUrl": pr_url}, {}
