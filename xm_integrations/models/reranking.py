"""What every XMOD reranker wrapper shares: checking pairs, choosing each pair's adapter, batching order, length limit.

:class:`~xm_integrations.models.mono_xm.MonoXM` (sentence-transformers) and
:class:`~xm_integrations.integrations.flagembedding.reranker.XMFlagReranker` (FlagEmbedding) score (query, passage) pairs
with different batching machinery, but must agree on which adapter a pair gets, on what counts as
bad input, and on the longest input the model can embed. Keeping those rules here keeps the two
classes from drifting apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xm_integrations.errors import ArgumentTypeError, PoolWorkerError
from xm_integrations.languages.mixin import XmodLanguageMixin
from xm_integrations.languages.routing import LanguageArg, RoutedPair, check_lang_ids, route_inputs
from xm_integrations.models.checkpoints import max_input_tokens

__all__ = [
    "as_pair_batch",
    "check_lang_ids_of",
    "check_pairs",
    "check_workers_alive",
    "detection_text",
    "language_major_order",
    "max_input_tokens",
    "pair_languages",
    "route_pairs",
]


def as_pair_batch(inputs: Any) -> tuple[list[Any], bool]:
    """The pairs of a scoring call as a list, and whether the call passed one pair on its own.

    Accepts what the stock ``CrossEncoder.predict`` and ``FlagReranker.compute_score`` accept: a
    list or tuple of pairs, one ``(query, passage)`` pair, or a NumPy string/object array (2-D: a
    batch; 1-D: one pair), whose rows become lists of ``str``. A list holding any list or tuple is a
    batch, even if its first item is not (``[None, ("q", "p")]``), so the error names the bad input.
    """
    if isinstance(inputs, np.ndarray):
        singular = inputs.ndim < 2 and inputs.size > 0
        inputs = inputs.tolist()
        return ([inputs] if singular else list(inputs)), singular
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str) and not any(
        isinstance(item, (list, tuple, np.ndarray)) for item in inputs
    ):
        return [inputs], True
    return list(inputs), False


def check_pairs(pairs: Sequence[Any]) -> list[tuple[str, str]]:
    """Every input as a ``(query, passage)`` tuple of two strings, or an error naming the first bad one.

    The tokenizers' own errors for ``None`` or a number ("TextEncodeInput must be ...") say neither
    which input is wrong nor what to do, and a pair of three texts would be silently cut.

    Raises:
        TypeError: an input is not a pair of two strings; the message names its index.
    """
    checked: list[tuple[str, str]] = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, np.ndarray):
            pair = pair.tolist()
        if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            shown = f"{type(pair).__name__} of length {len(pair)}" if isinstance(pair, (tuple, list)) else repr(pair)
            raise ArgumentTypeError(
                f"Input {index} is {shown}; every input must be a (query, passage) pair of two strings."
            )
        for part, name in zip(pair, ("query", "passage")):
            if not isinstance(part, str):
                raise ArgumentTypeError(
                    f"Input {index} has a {name} of type {type(part).__name__} ({part!r}); queries and passages "
                    "must be str (use '' for an empty text, which is scored)."
                )
        checked.append(pair if isinstance(pair, RoutedPair) else (pair[0], pair[1]))
    return checked


def detection_text(pair: Sequence[str]) -> str:
    """The text that ``language="auto"`` detects a pair's language from.

    The passage, because it is longer than the query and identifies its language far more
    reliably; the query when the passage is blank. A Mono-XM pair goes through one adapter, and
    the passage is most of its tokens.
    """
    query, passage = pair
    return passage if passage.strip() else query


def pair_languages(model: XmodLanguageMixin, pairs: Sequence[Sequence[str]], language: LanguageArg) -> list[str]:
    """The adapter code of every pair, from ``language`` as :meth:`MonoXM.predict` documents it.

    Resolved once in the calling process, before any batching or dispatch to worker processes,
    so that a bad language fails at once and "auto" runs once, whatever the pool.
    """
    return model._resolve_input_languages(language, len(pairs), lambda positions: [
        detection_text(pairs[index]) for index in positions
    ])


def route_pairs(model: XmodLanguageMixin, pairs: Sequence[Any], language: LanguageArg) -> list[RoutedPair]:
    """Check ``pairs`` and attach its adapter index to each (see :mod:`xm_integrations.languages.routing`).

    Pairs that already carry an adapter index keep it when ``language`` is ``None`` (they were
    routed by an earlier call, e.g. ``rank`` calling ``predict``); the index is still checked
    against the checkpoint, because XMOD silently zeroes the adapter of an out-of-range index.
    """
    checked = check_pairs(pairs)
    if language is None and checked and all(isinstance(pair, RoutedPair) for pair in checked):
        check_lang_ids_of(checked, len(model.languages))
        return checked  # type: ignore[return-value]
    codes = pair_languages(model, checked, language)
    return route_inputs(checked, codes, model.languages)


def check_lang_ids_of(pairs: Sequence[RoutedPair], num_languages: int) -> None:
    """Refuse pre-routed pairs whose adapter index the checkpoint does not have."""
    check_lang_ids(torch.tensor([pair.lang_id for pair in pairs], dtype=torch.long), num_languages)


def language_major_order(lang_ids: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """Positions sorted by adapter, then longest first: the order in which to cut batches.

    Length sorting keeps padding low, as both libraries already do. Grouping by adapter first
    puts each language in as few consecutive runs as possible: transformers versions that apply
    adapters per run of equal ids (``unique_consecutive``) then make one adapter call per language
    in a batch, not one per alternation, and in the other versions it costs nothing. A batch still
    mixes languages where one language's run ends, so nothing is ever split per language.
    """
    lang_ids = np.asarray(lang_ids, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lang_ids):
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((-lengths, lang_ids))


def check_workers_alive(processes: Sequence[Any], owner: str) -> None:
    """Raise if a pool worker process has died (killed, out of memory, crashed).

    A dead worker never answers: a caller that only waits on the results queue would wait forever.

    Raises:
        RuntimeError: naming each dead worker's pid and exit code.
    """
    dead = [process for process in processes if not process.is_alive()]
    if dead:
        details = ", ".join(f"pid {process.pid} (exit code {process.exitcode})" for process in dead)
        raise PoolWorkerError(f"{len(dead)} {owner} pool worker(s) died: {details}. Stop the pool and start a new one.")
