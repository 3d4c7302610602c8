"""Tokenization in a child process (``xm_integrations.tokenizer_process``): the same ids as in this process."""

from __future__ import annotations

import gc
import logging
import time

import numpy as np
import pytest
import torch

from xm_integrations import fast_inference as fi
from xm_integrations.testing.checkpoints import build_tiny_tokenizer
from xm_integrations.tokenizer_process import TokenizerProcess

FIRST = ["hello world", "", "x " * 40, "  ", "abc", "Wie viel Koffein?", "y", "光合作用 😀 é"]
SECOND = ["", "foo bar", "y " * 30, "z", "é ü 中文 😀", "Grüner Tee enthält Koffein.", " ", "tea"]


def _wait_ready(process: TokenizerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not process.ready:
        assert time.monotonic() < deadline, "the tokenizer process did not start"
        time.sleep(0.05)


@pytest.fixture()
def tokenizer():
    return build_tiny_tokenizer()  # a fresh one per test: its child process is its own


def _as_lists(sequences) -> list[list[int]]:
    return [[int(token) for token in sequence] for sequence in sequences]


@pytest.mark.parametrize("max_length", [None, 6, 16])
def test_child_gives_the_same_ids(tokenizer, max_length):
    process = fi._tokenizer_process(tokenizer, max_length, "longest_first")
    _wait_ready(process)
    ids, lengths = process.encode(FIRST, SECOND)
    assert ids.dtype == np.int32 and lengths.sum() == len(ids)
    expected = fi.tokenize(tokenizer, FIRST, SECOND, max_length=max_length)
    assert lengths.tolist() == [len(sequence) for sequence in expected]
    assert ids.tolist() == [token for sequence in expected for token in sequence]
    in_process = fi.tokenize(tokenizer, FIRST, SECOND, max_length=max_length, in_process=True)
    assert all(isinstance(sequence, np.ndarray) for sequence in in_process)
    assert _as_lists(in_process) == expected
    assert (_as_lists(fi.tokenize(tokenizer, FIRST, max_length=max_length, add_special_tokens=False, in_process=True))
            == fi.tokenize(tokenizer, FIRST, max_length=max_length, add_special_tokens=False))
    assert fi.tokenize(tokenizer, [], max_length=max_length, in_process=True) == []
    ids, lengths = process.encode([])
    assert len(ids) == len(lengths) == 0


def test_colbert_document_ids_in_process(tokenizer):
    _wait_ready(fi._tokenizer_process(tokenizer, 19, "longest_first"))
    ours = fi.colbert_document_ids(tokenizer, FIRST, doc_maxlen=20, marker_id=7, in_process=True)
    assert all(isinstance(sequence, np.ndarray) for sequence in ours)
    assert _as_lists(ours) == fi.colbert_document_ids(tokenizer, FIRST, doc_maxlen=20, marker_id=7)
    assert all(sequence[1] == 7 and len(sequence) <= 20 for sequence in ours)


def test_until_the_child_is_ready_this_process_tokenizes(tokenizer, monkeypatch):
    monkeypatch.setattr(TokenizerProcess, "ready", property(lambda self: False))
    assert fi.tokenize(tokenizer, FIRST, max_length=8, in_process=True) == fi.tokenize(tokenizer, FIRST, max_length=8)


def test_a_stopped_child_falls_back_with_a_warning(tokenizer, caplog):
    process = fi._tokenizer_process(tokenizer, 12, "longest_first")
    _wait_ready(process)
    process._process.kill()
    process._process.wait()
    expected = fi.tokenize(tokenizer, FIRST, SECOND, max_length=12)
    with caplog.at_level(logging.WARNING, logger="xm_integrations.tokenizer_process"):
        assert fi.tokenize(tokenizer, FIRST, SECOND, max_length=12, in_process=True) == expected
    assert "tokenizer process failed" in caplog.text
    assert not process.ready
    with pytest.raises(RuntimeError, match="not running"):
        process.encode(FIRST)


def test_bad_inputs_raise_the_usual_error(tokenizer):
    """A non-string never reaches the child; this process's tokenizer raises its own error for it."""
    process = fi._tokenizer_process(tokenizer, None, "longest_first")
    _wait_ready(process)
    with pytest.raises(RuntimeError, match="cannot take these inputs"):
        process.encode(["fine", None])
    with pytest.raises(Exception) as in_process:
        fi.tokenize(tokenizer, ["fine", None], max_length=None, in_process=True)
    with pytest.raises(Exception) as here:
        fi.tokenize(tokenizer, ["fine", None], max_length=None)
    assert type(in_process.value) is type(here.value)
    assert process.ready  # still usable
    assert _as_lists(fi.tokenize(tokenizer, FIRST, max_length=None, in_process=True)) == fi.tokenize(
        tokenizer, FIRST, max_length=None)


def test_the_child_stops_with_its_tokenizer():
    tokenizer = build_tiny_tokenizer()
    process = fi._tokenizer_process(tokenizer, None, "longest_first")
    _wait_ready(process)
    child = process._process
    del tokenizer, process
    gc.collect()
    assert child.wait(timeout=10) == 0


def test_score_pairs_through_the_child(tokenizer, monkeypatch):
    """The whole pipeline with the child tokenizing every chunk (the GPU default), on the CPU: the same scores."""
    from tests.test_fast_inference import _config, _pairs
    from transformers import XmodForSequenceClassification

    torch.manual_seed(0)
    model = XmodForSequenceClassification(_config(num_labels=1)).eval()
    pairs = _pairs(700)
    langs = np.arange(len(pairs)) % 5
    expected = fi.score_pairs(model, tokenizer, pairs, langs, max_length=64)
    _wait_ready(fi._tokenizer_process(tokenizer, 64, "longest_first"))
    encoded = []
    encode = TokenizerProcess.encode

    def spy(self, *args, **kwargs):
        encoded.append(len(args[0]))
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(TokenizerProcess, "encode", spy)
    monkeypatch.setattr(fi, "_tokenize_in_process", lambda device, count: True)
    scores = fi.score_pairs(model, tokenizer, pairs, langs, max_length=64)
    assert sum(encoded) == len(pairs)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
