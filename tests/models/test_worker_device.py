"""select_worker_device: a pool worker makes its GPU current; the caller's process is never changed."""

from __future__ import annotations

import multiprocessing

import pytest
import torch

from xm_integrations.models import core


@pytest.fixture
def set_device_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(torch.device(device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return calls


def test_in_the_callers_process_nothing_changes(set_device_calls: list) -> None:
    assert multiprocessing.parent_process() is None
    core.select_worker_device("cuda:1")
    assert set_device_calls == []


def test_in_a_worker_its_gpu_becomes_current(set_device_calls: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.multiprocessing, "parent_process", lambda: object())
    for device in ("cpu", "cuda", None, "cuda:0"):  # no index, or already current: nothing to do
        core.select_worker_device(device)
    assert set_device_calls == []
    core.select_worker_device("cuda:1")
    core.select_worker_device(torch.device("cuda", 3))
    assert set_device_calls == [torch.device("cuda:1"), torch.device("cuda:3")]
