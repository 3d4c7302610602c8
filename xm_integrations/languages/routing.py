"""A language per input: resolve the ``language=`` argument and carry adapter ids with the inputs.

sentence-transformers sorts inputs by length, cuts them into batches and, with a pool, pickles
chunks into other processes. A side list of languages would have to follow every one of those
steps. Instead each input carries its adapter id (:class:`RoutedText`, :class:`RoutedPair`, which
are still a ``str`` and a ``tuple``), and the model's ``preprocess`` turns the ids of a batch into
XMOD's ``lang_ids`` tensor. Nothing is stored on the model, so concurrent calls with different
languages cannot interfere.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Union

import torch

from xm_integrations.errors import (
    AdapterIndexError,
    ArgumentTypeError,
    InvalidArgumentError,
    MissingLanguageError,
    UnknownLanguageError,
)
from xm_integrations.languages.resolution import resolve_language

__all__ = [
    "AUTO",
    "LanguageArg",
    "MissingLanguageError",
    "RoutedPair",
    "RoutedText",
    "check_lang_ids",
    "is_auto",
    "language_major_length",
    "resolve_input_languages",
    "route_inputs",
    "routed_lang_ids",
]

#: Pass ``language="auto"`` to detect the language of every input.
AUTO = "auto"

# Runs of one language are cheaper for XMOD (it runs each adapter once per run of equal ids), so
# inputs are sorted by language first and by length second; lengths stay far below this factor.
_LANGUAGE_SORT_STRIDE = 10**12

#: ``None`` (the default language), one language, ``"auto"``, or one entry per input (each of
#: which may itself be ``None`` or ``"auto"``).
LanguageArg = Union[str, Sequence[Union[str, None]], None]


class RoutedText(str):
    """A text that carries the index of its language adapter."""

    lang_id: int

    def __new__(cls, text: str, lang_id: int) -> RoutedText:
        routed = super().__new__(cls, text)
        routed.lang_id = lang_id
        return routed

    def __reduce__(self):
        return (RoutedText, (str(self), self.lang_id))


class RoutedPair(tuple):
    """A (query, passage) pair that carries the index of its language adapter."""

    lang_id: int

    def __new__(cls, pair: Sequence[str], lang_id: int) -> RoutedPair:
        routed = super().__new__(cls, pair)
        routed.lang_id = lang_id
        return routed

    def __reduce__(self):
        return (RoutedPair, (tuple(self), self.lang_id))


def _check_texts(inputs: Sequence[object]) -> None:
    """Name the first entry that is not a text (or a pair of texts): the tokenizer's error would not."""
    for index, item in enumerate(inputs):
        parts = item if isinstance(item, (tuple, list)) else (item,)
        for part in parts:
            if not isinstance(part, str):
                raise ArgumentTypeError(f"Input {index} is {type(part).__name__} ({part!r}); every text must be a str.")


def resolve_input_languages(
    language: LanguageArg,
    count: int,
    *,
    available: Sequence[str],
    default: str | None,
    detect: Callable[[list[int]], list[str]],
) -> list[str]:
    """One adapter code per input.

    Args:
        language: ``None`` for the default language, one language for every input, ``"auto"`` to
            detect each input's language, or a list aligned with the inputs.
        count: How many inputs there are.
        available: The checkpoint's adapters.
        default: The checkpoint's ``default_language``, used for ``None``.
        detect: Called with the positions to detect; returns their adapter codes. It runs only
            when ``"auto"`` is asked for.

    Raises:
        UnknownLanguageError: a language has no adapter in the checkpoint.
        MissingLanguageError: the default is needed but the checkpoint has none.
        ValueError: a list of languages whose length differs from the number of inputs.
    """
    per_input = _per_input_languages(language, count)
    if not per_input and isinstance(language, str) and not is_auto(language):
        _resolve_one(language, available, default)  # a misspelt language fails on an empty call too
    resolved: dict[str | None, str] = {}
    codes: list[str | None] = []
    for entry in per_input:
        if is_auto(entry):
            codes.append(None)
            continue
        if entry not in resolved:
            resolved[entry] = _resolve_one(entry, available, default)
        codes.append(resolved[entry])
    to_detect = [index for index, entry in enumerate(per_input) if is_auto(entry)]
    if to_detect:
        for index, code in zip(to_detect, detect(to_detect)):
            codes[index] = code
    return codes  # type: ignore[return-value]


def is_auto(language: object) -> bool:
    """Whether ``language`` asks for detection: ``"auto"`` in any case, with surrounding spaces."""
    return isinstance(language, str) and language.strip().lower() == AUTO


def _per_input_languages(language: LanguageArg, count: int) -> list[str | None]:
    """``language`` as one entry per input, every entry checked for its type."""
    if language is None or isinstance(language, str):
        return [language] * count
    if isinstance(language, (bytes, int, float)) or not isinstance(language, Iterable):
        raise ArgumentTypeError(
            f"language must be None, a str ('fr', 'pt-BR', 'German', 'auto') or a list with one language per "
            f"input, got {type(language).__name__} ({language!r})."
        )
    per_input = list(language)
    if len(per_input) != count:
        raise InvalidArgumentError(
            f"language has {len(per_input)} entries but there are {count} inputs: give one language per "
            "input, a single language for all of them, or 'auto'."
        )
    for index, entry in enumerate(per_input):
        if entry is not None and not isinstance(entry, str):
            raise ArgumentTypeError(
                f"language[{index}] is {type(entry).__name__} ({entry!r}); each entry must be a str such as 'fr' "
                "or 'auto', or None for the default language."
            )
    return per_input


def _resolve_one(language: str | None, available: Sequence[str], default: str | None) -> str:
    if language is not None:
        try:
            return resolve_language(language, available)
        except UnknownLanguageError as error:
            # Per call, 'auto' is valid too: say so, and suggest it first for near misses ('atuo').
            suggestions = list(error.suggestions)
            if difflib.get_close_matches(language.strip().lower(), [AUTO, "detect", "automatic"], n=1, cutoff=0.6):
                suggestions.insert(0, AUTO)
            raise UnknownLanguageError(
                language, available, suggestions[:4],
                f"{error.reason}; per call, 'auto' detects each input's language",
            ) from None
    if default is None:
        raise MissingLanguageError(
            "No language given and the checkpoint has no default_language. Pass language='fr' (any code, tag or "
            "name), a list with one language per input, or 'auto'; or call set_default_language() once."
        )
    return default


def route_inputs(inputs: Sequence[str | Sequence[str]], codes: Sequence[str], available: Sequence[str]) -> list:
    """Attach to every input the adapter index of its language code."""
    _check_texts(inputs)
    index_of = {code: index for index, code in enumerate(available)}
    return [
        RoutedText(item, index_of[code]) if isinstance(item, str) else RoutedPair(item, index_of[code])
        for item, code in zip(inputs, codes)
    ]


def check_lang_ids(lang_ids: torch.Tensor, num_languages: int) -> None:
    """Refuse adapter indices outside the checkpoint's languages.

    XMOD silently zeroes the adapter output for an out-of-range index, which would give plausible
    but wrong scores.
    """
    if lang_ids.numel() and (int(lang_ids.min()) < 0 or int(lang_ids.max()) >= num_languages):
        bad = sorted({int(i) for i in lang_ids.tolist() if not 0 <= i < num_languages})
        raise AdapterIndexError(bad, num_languages)


def routed_lang_ids(batch: Sequence[object], num_languages: int) -> torch.Tensor | None:
    """The ``lang_ids`` tensor of a batch of routed inputs, or ``None`` when none is routed."""
    ids = [getattr(item, "lang_id", None) for item in batch]
    if all(lang_id is None for lang_id in ids):
        return None
    if any(lang_id is None for lang_id in ids):
        raise InvalidArgumentError("A batch mixes inputs with and without a language; route every input or none.")
    lang_ids = torch.tensor(ids, dtype=torch.long)
    check_lang_ids(lang_ids, num_languages)
    return lang_ids


def language_major_length(carrier: object, length: int) -> int:
    """A sort key for sentence-transformers' length sorting that groups inputs by language first.

    ``carrier`` is whatever holds the input's ``lang_id`` (a routed input); inputs without one sort
    as adapter 0. XMOD processes each run of equal ``lang_ids`` in one pass, so batches made of
    long runs of one adapter are cheaper, while the length order inside a language keeps padding low.
    """
    return getattr(carrier, "lang_id", 0) * _LANGUAGE_SORT_STRIDE + length
