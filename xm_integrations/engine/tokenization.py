"""Tokenization straight through the Rust tokenizer, in batches, without transformers' per-encoding Python work.

Gives exactly ``tokenizer(..., truncation=True, max_length=...)["input_ids"]`` (tested), through a
private copy of the backend with truncation set once and the shared word cache switched off (its
lock bounded 16 CPUs at half their rate). The cache switch is a tokenizers
internal, reached through :mod:`xm_integrations.compat.tokenizers`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from xm_integrations.compat.tokenizers import disable_word_cache

__all__ = ["tokenize"]


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def _truncating_backend(tokenizer: Any, max_length: int | None, strategy: str = "longest_first") -> Any:
    """A private copy of a fast tokenizer's Rust backend, set to truncate as ``tokenizer(...,
    truncation=strategy, max_length=max_length)`` does (on the tokenizer's side), or ``None`` for a
    tokenizer without one. Cached per tokenizer, length and strategy; never changed after it is
    made, so threads share it safely (transformers re-configures its own backend on each call).

    A Unigram model's word cache (XLM-R's sentencepiece model) is switched off in the copy: it is
    one lock-guarded map shared by all of the tokenizer's Rust threads, and on a 16-CPU host that
    lock bounded tokenization at about half its rate.
    The cache only memoises words, so the ids are the same.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    key = (max_length, strategy)
    with _BACKENDS_LOCK:
        per_setting = _BACKENDS.setdefault(tokenizer, {})
        if key not in per_setting:
            from tokenizers import Tokenizer

            private = Tokenizer.from_str(backend.to_str())
            private.no_padding()
            if max_length is None:
                private.no_truncation()
            else:
                private.enable_truncation(max_length, stride=0, strategy=strategy,
                                          direction=getattr(tokenizer, "truncation_side", "right"))
            disable_word_cache(private)
            per_setting[key] = private
        return per_setting[key]


def tokenize(
    tokenizer: Any,
    first: Sequence[str],
    second: Sequence[str] | None = None,
    *,
    max_length: int | None,
    truncation: str = "longest_first",
    add_special_tokens: bool = True,
) -> list[list[int]]:
    """Token ids without padding, truncated with ``truncation`` (transformers' strategy name) to ``max_length``.

    The same ids as ``tokenizer(first, second, truncation=truncation, max_length=max_length,
    add_special_tokens=add_special_tokens)["input_ids"]`` (``tests/engine/test_pipeline.py`` checks
    it), from the Rust backend directly: transformers' Python post-processing of each encoding
    holds the GIL for tens of microseconds per input, enough to starve the thread that launches the
    GPU work.
    A tokenizer without a Rust backend is called as usual.
    """
    backend = _truncating_backend(tokenizer, max_length, truncation)
    if backend is not None:
        inputs = list(zip(first, second)) if second is not None else list(first)
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which nothing here reads.
        encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [encoding.ids for encoding in encode_batch(inputs, add_special_tokens=add_special_tokens)]
    kwargs: dict[str, Any] = {"padding": False, "return_attention_mask": False, "return_token_type_ids": False,
                              "add_special_tokens": add_special_tokens}
    if max_length is not None:
        kwargs.update(truncation=truncation, max_length=max_length)
    encoded = tokenizer(list(first), list(second), **kwargs) if second is not None else tokenizer(list(first), **kwargs)
    return encoded["input_ids"]
