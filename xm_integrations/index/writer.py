"""Chunk writes one at a time, in a background thread where the backend allows it.

An index build alternates two costs of similar size on a GPU host: encoding a chunk (the device)
and committing it (converting to Arrow, writing files: the CPU and the disk). :class:`ChunkWriter`
commits chunk ``k`` in a thread while the caller encodes chunk ``k + 1``, so the build takes the
longer of the two instead of their sum. Commits stay sequential and in order (one thread, at most
one chunk in flight), so an interrupted build still ends at its last committed chunk, and memory
stays bounded by two chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ChunkWriter"]

logger = logging.getLogger(__name__)


class ChunkWriter:
    """Runs ``write(batch, upsert)`` calls in order, each one after the previous has committed.

    With ``background=True`` a call returns once the write is started; the ids it writes stay in
    :attr:`pending_ids` until it has committed, so the caller can treat them as present (the next
    chunk's duplicate check cannot see them in the store yet). An error of a background write is
    raised by the next :meth:`submit` or by :meth:`wait`. Use as a context manager: leaving it
    waits for the write in flight, so nothing is left running.
    """

    def __init__(self, write: Callable[[Any, bool], None], *, background: bool) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xm-index-writer") if background else None
        self._pending: Future[None] | None = None
        self.pending_ids: frozenset[str] = frozenset()

    def submit(self, batch: Any, ids: list[str], *, upsert: bool) -> None:
        """Write ``batch`` (holding ``ids``) after the previous write has committed."""
        self.wait()
        if self._pool is None:
            self._write(batch, upsert)
            return
        self.pending_ids = frozenset(ids)
        self._pending = self._pool.submit(self._write, batch, upsert)

    def wait(self) -> None:
        """Block until the write in flight has committed; raise its error if it failed."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                pending.result()
        finally:
            self.pending_ids = frozenset()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            if exc is None:
                self.wait()
            else:  # the caller's error wins; a failed write in flight is only logged
                try:
                    self.wait()
                except Exception as write_error:  # noqa: BLE001 - reported, the caller's error is raised
                    logger.error("A chunk write failed while the build was stopping: %s", write_error)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
