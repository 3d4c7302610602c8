"""A real multi-node Ray cluster on one machine, for tests and benchmarks: a head and worker nodes in a network namespace.

Ray advertises a node by the host's interface address, even when told 127.0.0.1, so nodes and
drivers on one machine only meet reliably in a network namespace that has nothing but loopback.
:class:`LocalRayCluster` makes one (which needs root and ``ip netns``), starts ``ray start
--block`` for the head and each worker in its own process group, runs drivers inside the
namespace with :meth:`LocalRayCluster.run`, and on exit stops the nodes, deletes the namespace
and removes Ray's temporary folder. Token authentication is on, as Ray's default: a fresh token
is shared by the nodes and the drivers through the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xm_integrations.errors import RayClusterUnavailable

__all__ = ["LocalRayCluster", "RayClusterUnavailable", "cannot_start_reason"]


def cannot_start_reason() -> str | None:
    """Why a :class:`LocalRayCluster` cannot run here (not root, no ``ip``, no Ray), or None when it can."""
    if importlib_missing("ray"):
        return "Ray is not installed (pip install 'xm-integrations[ray]')"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a multi-node Ray cluster on one machine needs a network namespace, which needs root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing, so no network namespace can be made"
    return None


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


class LocalRayCluster:
    """A head and ``workers`` worker nodes, each with ``cpus_per_node`` logical CPUs, in a fresh network namespace.

    Use it as a context manager; :attr:`address` is the head's GCS address inside the namespace.

    Raises:
        RayClusterUnavailable: the machine cannot run it (see :func:`cannot_start_reason`) or a
            node did not come up; nothing is left behind.
    """

    def __init__(self, workers: int = 1, cpus_per_node: int = 1, object_store_bytes: int = 300 * 2**20,
                 port: int = 6379) -> None:
        self.workers = workers
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.port = port
        self.namespace = f"xm-ray-{os.getpid()}-{secrets.token_hex(3)}"
        self.address = f"127.0.0.1:{port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self._nodes: list[subprocess.Popen] = []
        self._temp = Path(tempfile.mkdtemp(prefix="xmray"))  # short: Ray's socket paths have a length limit
        self._ray = str(Path(sys.executable).with_name("ray"))

    def __enter__(self) -> LocalRayCluster:
        reason = cannot_start_reason()
        if reason:
            raise RayClusterUnavailable(reason)
        try:
            self._ip("netns", "add", self.namespace)
            self._ip("netns", "exec", self.namespace, "ip", "link", "set", "lo", "up")
            self._start_node(["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self._temp}"])
            self._wait_for_nodes(1)
            for _ in range(self.workers):
                self._start_node([f"--address={self.address}"])
            self._wait_for_nodes(1 + self.workers)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for node in reversed(self._nodes):
            _stop_group(node)
        self._nodes.clear()
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        shutil.rmtree(self._temp, ignore_errors=True)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside the cluster's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: Sequence[str], timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` (a driver) inside the namespace with the cluster's token; output captured as text."""
        return subprocess.run(self.command(argv), env=self.env, capture_output=True, text=True, timeout=timeout,
                              **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside the namespace without waiting (to kill it mid-job, say)."""
        return subprocess.Popen(self.command(argv), env=self.env, **kwargs)

    def _start_node(self, options: list[str]) -> None:
        argv = self.command([self._ray, "start", "--block", f"--num-cpus={self.cpus_per_node}", "--num-gpus=0",
                             f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats", *options])
        log = open(self._temp / f"node{len(self._nodes)}.log", "wb")
        self._nodes.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))

    def _wait_for_nodes(self, count: int, timeout: float = 60) -> None:
        probe = (f"import ray; ray.init(address='{self.address}', log_to_driver=False); "
                 f"print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(node.poll() is not None for node in self._nodes):
                break
            done = self.run([sys.executable, "-c", probe], timeout=timeout)
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(0.5)
        logs = "\n".join(path.read_text(errors="replace")[-800:] for path in sorted(self._temp.glob("node*.log")))
        raise RayClusterUnavailable(f"the local Ray cluster did not reach {count} node(s) in {timeout:.0f} s:\n{logs}")

    def _ip(self, *argv: str) -> None:
        done = subprocess.run(["ip", *argv], capture_output=True, text=True)
        if done.returncode:
            raise RayClusterUnavailable(f"'ip {' '.join(argv)}' failed: {done.stderr.strip()}")


def _stop_group(node: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM the node's process group (``ray start --block`` stops its raylet and workers), then SIGKILL stragglers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # workers that outlived the node's main process
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return
