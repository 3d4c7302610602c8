"""``fast_inference=True | False | FastInferenceConfig(...)``: what the fast path does, as one value.

The fast path (``MonoXM.predict``, ``XMFlagReranker.compute_score``, ``ColBERTXM.encode_document``)
cuts batches by a budget of padded tokens rather than by a count of inputs, because the count says
nothing about memory or speed when lengths vary. Its knobs are public so that a user can cap a
forward pass's memory (``max_batch_tokens``) and tests and benchmarks can vary them without
patching module globals.

``batch_size`` keeps its stock meaning, the most inputs in one forward pass, when the caller gives
it; when the caller does not, the token budget alone decides (the stock defaults, 32 or 128, would
make batches far smaller than the budget allows). :class:`UnsetBatchSize` marks "not given": it is
an ``int`` equal to the stock default, so stock code paths that receive it behave exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from xm_integrations.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_TOKENS_CPU",
    "DEFAULT_MAX_TOKENS_CUDA",
    "FastInferenceConfig",
    "UnsetBatchSize",
    "caller_batch_size",
    "resolve_fast_inference",
]

#: Padded tokens per forward pass on CUDA (an H200 is saturated well below this; 32k tokens of a
#: base-size model need about 1 GiB of activations in fp16).
DEFAULT_MAX_TOKENS_CUDA = 32768
#: Padded tokens per forward pass on CPU: larger batches only add memory there.
DEFAULT_MAX_TOKENS_CPU = 4096


@dataclass(frozen=True)
class FastInferenceConfig:
    """Settings of the fast inference path; pass one as ``fast_inference=`` to a model class.

    Attributes:
        max_batch_tokens: Padded tokens per forward pass (rows x padded length), the bound on a
            forward pass's activation memory. ``None``: :data:`DEFAULT_MAX_TOKENS_CUDA` on CUDA,
            :data:`DEFAULT_MAX_TOKENS_CPU` on CPU.
        max_batch_size: The most inputs per forward pass, whatever the call's ``batch_size``
            (``None``: no cap beyond the call's ``batch_size``, when given, and the token budget).
        chunk_size: The most inputs tokenized in one step; the first steps are smaller (256,
            doubling) so the device starts early, and tokenization of the next step overlaps the
            device's work on this one.
        order_by_length: Order inputs by length in characters before cutting steps, so each step
            holds similar lengths and its batches need little padding.
        background_tokenization: Tokenize the next step in a background thread (the Rust tokenizer
            releases the GIL); ``False`` tokenizes in the calling thread.
        share_batch_storage: ColBERT-XM documents only: return each document's vectors as a view
            into one tensor per batch (no copy), instead of compact tensors of their own. Views
            keep the whole batch alive: keeping or ``torch.save``-ing a few pins or writes all of it.
    """

    max_batch_tokens: int | None = None
    max_batch_size: int | None = None
    chunk_size: int = 1024
    order_by_length: bool = True
    background_tokenization: bool = True
    share_batch_storage: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise InvalidArgumentError(f"FastInferenceConfig.{name} must be a positive integer or None, got {value!r}.")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size <= 0:
            raise InvalidArgumentError(f"FastInferenceConfig.chunk_size must be a positive integer, got {self.chunk_size!r}.")

    def rows_cap(self, batch_size: int | None) -> int | None:
        """The most rows per forward pass for a call: the caller's ``batch_size`` (if given) and ``max_batch_size``."""
        caps = [cap for cap in (caller_batch_size(batch_size), self.max_batch_size) if cap is not None]
        return min(caps) if caps else None

    def engine_kwargs(self, batch_size: int | None = None) -> dict[str, object]:
        """The keyword arguments of ``fast_inference.score_pairs`` / ``encode_texts`` for a call with ``batch_size``."""
        return {
            "max_tokens": self.max_batch_tokens,
            "max_batch_size": self.rows_cap(batch_size),
            "chunk_size": self.chunk_size,
            "ordered": self.order_by_length,
            "background": self.background_tokenization,
        }


class UnsetBatchSize(int):
    """A ``batch_size`` the caller did not give: equal to the stock default, marked as such.

    Stock methods that receive it use it as the plain integer; the fast path reads it as "no row
    cap" (:func:`caller_batch_size`).
    """

    def __repr__(self) -> str:
        return f"UnsetBatchSize({int(self)})"

    def __reduce__(self) -> tuple:  # survives pickling into pool workers
        return (UnsetBatchSize, (int(self),))


def caller_batch_size(batch_size: int | None) -> int | None:
    """``batch_size`` if the caller gave it, ``None`` when it is unset (``None`` or :class:`UnsetBatchSize`).

    Raises:
        ValueError: a given ``batch_size`` that is not a positive integer.
    """
    if batch_size is None or isinstance(batch_size, UnsetBatchSize):
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def resolve_fast_inference(setting: bool | FastInferenceConfig) -> FastInferenceConfig | None:
    """The config a ``fast_inference=`` argument stands for: ``None`` when the fast path is off.

    Raises:
        TypeError: anything but a bool or a :class:`FastInferenceConfig`.
    """
    if isinstance(setting, FastInferenceConfig):
        return setting
    if isinstance(setting, bool):
        return FastInferenceConfig() if setting else None
    from xm_integrations.errors import ArgumentTypeError

    raise ArgumentTypeError(
        f"fast_inference must be True, False or a FastInferenceConfig(...), got {type(setting).__name__} ({setting!r})."
    )
