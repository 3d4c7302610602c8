"""ChunkWriter: writes run one at a time and in order; a failed background write surfaces; leaving waits."""

from __future__ import annotations

import threading

import pytest

from xm_integrations.index.writer import ChunkWriter


@pytest.mark.parametrize("background", [True, False])
def test_writes_run_in_order_one_at_a_time(background):
    written, running, lock = [], [], threading.Lock()

    def write(batch, upsert):
        with lock:
            running.append(batch)
            assert len(running) == 1, "two writes at once"
        threading.Event().wait(0.01)
        written.append((batch, upsert, threading.current_thread().name))
        with lock:
            running.remove(batch)

    with ChunkWriter(write, background=background) as writer:
        for k in range(5):
            writer.submit(k, [f"id{k}"], upsert=k % 2 == 1)
            if background:
                assert writer.pending_ids == {f"id{k}"}
    assert [(batch, upsert) for batch, upsert, _ in written] == [(k, k % 2 == 1) for k in range(5)]
    assert all(name.startswith("xm-index-writer") == background for _, _, name in written)
    assert writer.pending_ids == frozenset()


def test_a_failed_background_write_is_raised_by_the_next_submit():
    def write(batch, upsert):
        if batch == 1:
            raise ValueError("disk full")

    writer = ChunkWriter(write, background=True)
    writer.submit(0, ["a"], upsert=False)
    writer.submit(1, ["b"], upsert=False)
    with pytest.raises(ValueError, match="disk full"):
        writer.submit(2, ["c"], upsert=False)
    writer.__exit__(None, None, None)


def test_leaving_on_the_callers_error_waits_for_the_write_in_flight_and_keeps_that_error():
    release, done = threading.Event(), []

    def write(batch, upsert):
        release.wait(5)
        done.append(batch)
        raise OSError("write failed too")

    with pytest.raises(KeyboardInterrupt):
        with ChunkWriter(write, background=True) as writer:
            writer.submit(0, ["a"], upsert=False)
            threading.Timer(0.05, release.set).start()
            raise KeyboardInterrupt
    assert done == [0]
