"""tokenizers internals we call, each with why; checked on tokenizers 0.21-0.23.

``tests/compat/test_contract.py`` asserts each one for the installed version.
"""

from __future__ import annotations

from typing import Any

__all__ = ["disable_word_cache"]


def disable_word_cache(tokenizer: Any) -> bool:
    """Switch off a Unigram model's word cache (``model._resize_cache(0)``, tokenizers >= 0.21); returns whether it could.

    The cache is one lock-guarded map shared by all of the tokenizer's Rust threads; on a 16-CPU
    host that lock bounded tokenization at about half its rate. It only memoises words, so the ids
    do not change. Only ever called on a private copy of a backend, never on a user's tokenizer.
    """
    resize_cache = getattr(tokenizer.model, "_resize_cache", None)
    if type(tokenizer.model).__name__ != "Unigram" or resize_cache is None:
        return False
    resize_cache(0)
    return True
