"""Tokenization in a child interpreter, so that the thread launching GPU work never waits for the GIL.

The fast paths tokenize the next chunk of inputs in a background thread while the GPU runs the
current one (:func:`xm_integrations.fast_inference.run_pipelined`). The Rust tokenizer releases the
GIL, but turning its encodings into Python lists of ids does not, and while the background thread
holds the GIL every operation the launching thread queues waits for it (up to the interpreter's
5 ms switch interval each time). Measured on an H200 host (16 vCPUs) on 10,000 Mono-XM pairs and
30,000 ColBERT-XM passages (``docs/benchmarks.md``): 1.04-1.14x faster end to end with this child
process instead, 1.21-1.33x with five languages mixed (whose launching thread has more to queue).

:class:`TokenizerProcess` runs a copy of a fast tokenizer's Rust backend in a child interpreter
that imports only NumPy and ``tokenizers`` (not this package, not torch): texts go to it as UTF-8
over a pipe and ids come back as one ``int32`` buffer, so the parent never builds a Python int per
token. The child is private to this process, trusted, and exchanges no pickles. It stops when its
pipe closes (:meth:`TokenizerProcess.close`, or this process exiting).

This module imports nothing heavy itself: the child loads it by path and calls :func:`serve`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

__all__ = ["TokenizerProcess", "serve"]

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("<Q")
_READY = b"ready"
_OK = b"ok"

#: What the child runs: this file loaded by path, so that the package (which imports torch) is not.
_CHILD_SOURCE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_xm_tokenizer_process', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.serve()\n"
)


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)


def _read_frame(stream: IO[bytes]) -> bytes:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the tokenizer process closed its pipe")
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the tokenizer process closed its pipe")
    return payload


def _pack_texts(texts: Sequence[str]) -> tuple[bytes, bytes]:
    """``(UTF-8 of every text, concatenated; their byte lengths as int64)``."""
    encoded = [text.encode("utf-8") for text in texts]
    return b"".join(encoded), np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)).tobytes()


def _unpack_texts(blob: bytes, lengths: bytes) -> list[str]:
    stops = np.cumsum(np.frombuffer(lengths, dtype=np.int64)).tolist()
    starts = [0, *stops[:-1]]
    return [blob[start:stop].decode("utf-8") for start, stop in zip(starts, stops)]


class TokenizerProcess:
    """A ``tokenizers.Tokenizer`` (configured: truncation, no padding) running in a child interpreter.

    Started by the constructor; it loads the tokenizer in the background (about a second for
    XLM-R's 250k vocabulary), and :attr:`ready` says when it can take work, so that a caller can
    tokenize in its own thread meanwhile. One request at a time (a lock serialises callers).
    """

    def __init__(self, backend: Any) -> None:
        """Args:
            backend: A ``tokenizers.Tokenizer``; its JSON (truncation settings included) is what the
                child loads.
        """
        self._owner = os.getpid()  # a forked copy of this object must not share the pipes
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_SOURCE, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failed = False
        self._starter = threading.Thread(target=self._start, args=(backend.to_str().encode("utf-8"),),
                                         name="xm-tokenizer-process-start", daemon=True)
        self._starter.start()

    def _start(self, backend_json: bytes) -> None:
        try:
            with self._lock:
                _write_frame(self._process.stdin, backend_json)
                self._process.stdin.flush()
                if _read_frame(self._process.stdout) != _READY:
                    raise RuntimeError("unexpected answer from the tokenizer process")
            self._ready.set()
        except (OSError, EOFError, RuntimeError) as error:
            self._fail(error)

    @property
    def ready(self) -> bool:
        """Whether the child has loaded the tokenizer and works, for this process (never blocks)."""
        return self._ready.is_set() and not self._failed and os.getpid() == self._owner

    def encode(self, first: Sequence[str], second: Sequence[str] | None = None, *,
               add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ids of each text (or pair), as ``(ids, lengths)``: every sequence's ids back to back
        (``int32``) and each sequence's length (``int64``).

        The same ids as the backend's ``encode_batch`` in this process.

        Raises:
            RuntimeError: the child is not ready, failed, or could not tokenize these inputs (it
                stays usable for the next request in that last case).
        """
        if not self.ready:
            raise RuntimeError("the tokenizer process is not running")
        header = json.dumps({"pairs": second is not None, "add_special_tokens": add_special_tokens}).encode()
        try:
            frames = [header, *_pack_texts(first)]
            if second is not None:
                frames.extend(_pack_texts(second))
        except (AttributeError, UnicodeEncodeError) as error:  # not a str, or not encodable as UTF-8
            raise RuntimeError(f"the tokenizer process cannot take these inputs: {error}") from None
        try:
            with self._lock:
                for frame in frames:
                    _write_frame(self._process.stdin, frame)
                self._process.stdin.flush()
                status = _read_frame(self._process.stdout)
                if status != _OK:
                    raise ValueError(status.decode("utf-8", "replace"))
                lengths = np.frombuffer(_read_frame(self._process.stdout), dtype=np.int64)
                ids = np.frombuffer(_read_frame(self._process.stdout), dtype=np.int32)
        except ValueError as error:
            raise RuntimeError(f"the tokenizer process could not tokenize these inputs: {error}") from None
        except (OSError, EOFError) as error:
            self._fail(error)
            raise RuntimeError(f"the tokenizer process stopped: {error}") from error
        return ids, lengths

    def _fail(self, error: BaseException) -> None:
        if not self._failed:
            logger.warning("Tokenizing in the calling process from now on: the tokenizer process failed (%s).", error)
        self._failed = True
        self.close()

    def close(self) -> None:
        """Stop the child: it exits when its input closes. Idempotent."""
        self._failed = True
        process = self._process
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __del__(self) -> None:
        if getattr(self, "_owner", None) == os.getpid() and self._process.poll() is None:
            self.close()


def _encode_request(tokenizer: Any, stdin: IO[bytes]) -> tuple[np.ndarray, np.ndarray]:
    header = json.loads(_read_frame(stdin))
    first = _unpack_texts(_read_frame(stdin), _read_frame(stdin))
    inputs: list[Any] = first
    if header["pairs"]:
        inputs = list(zip(first, _unpack_texts(_read_frame(stdin), _read_frame(stdin))))
    encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode_batch(inputs, add_special_tokens=header["add_special_tokens"])
    ids = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((token for sequence in ids for token in sequence), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def serve() -> None:
    """The child's loop: load the tokenizer sent first, then answer requests until the input closes."""
    from tokenizers import Tokenizer

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        tokenizer = Tokenizer.from_str(_read_frame(stdin).decode("utf-8"))
    except EOFError:
        return
    resize_cache = getattr(tokenizer.model, "_resize_cache", None)  # see fast_inference._truncating_backend
    if type(tokenizer.model).__name__ == "Unigram" and resize_cache is not None:
        resize_cache(0)
    _write_frame(stdout, _READY)
    stdout.flush()
    while True:
        try:
            flat, lengths = _encode_request(tokenizer, stdin)
        except EOFError:
            return
        except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
            _write_frame(stdout, f"{type(error).__name__}: {error}".encode())
        else:
            _write_frame(stdout, _OK)
            _write_frame(stdout, lengths.tobytes())
            _write_frame(stdout, flat.tobytes())
        stdout.flush()
