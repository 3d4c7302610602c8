"""sentence-transformers internals we override or read, each with why; checked on 6.2.0 and 6.3.0 (the supported floor and newest).

Our classes subclass the stock ones; where the behaviour we need hangs on a private step, the
override lives here, as a mixin placed before the stock class, and forwards to a hook with a name
of ours. ``tests/compat/test_contract.py`` asserts every name below, with its signature, for the
installed version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "CrossEncoderHooks",
    "LanguageMajorSorting",
    "MultiVectorEncoderHooks",
    "embed_document_columns",
    "placement_is_delegated",
    "skiplist_ids",
]


class LanguageMajorSorting:
    """Overrides ``_input_length`` so that stock batching sorts inputs by adapter first, then by stock's length.

    XMOD runs each run of equal adapter ids in one pass, so batches made of long runs of one
    language are cheaper. The class using it sets :attr:`sort_key` (``(input, stock_length) -> key``,
    a ``staticmethod``); the stock length is the next class's ``_input_length`` (``CrossEncoder``'s
    for pairs, ``BaseModel``'s for texts).
    """

    sort_key: Callable[[Any, int], int]

    @classmethod
    def _input_length(cls, sample: Any) -> int:
        return cls.sort_key(sample, super(LanguageMajorSorting, cls)._input_length(sample))


class CrossEncoderHooks(LanguageMajorSorting):
    """``CrossEncoder``'s private steps, forwarded to hooks of the model class.

    * ``_inference`` (6.2+): what a pool worker calls for its chunk, bypassing ``predict``; the
      model's :meth:`inference_hook` takes the fast path there or returns ``None`` for stock.
    * ``_multi_process``: the pool call; the model's :meth:`multi_process_hook` chooses the chunk
      size (two large chunks per worker) and starts or stops a pool for a list of devices.
    """

    #: Provided by the model class: ``(inputs, **step arguments) -> scores``, or ``None`` for stock.
    inference_hook: Callable[..., torch.Tensor | None]
    #: Provided by the model class: ``(stock_multi_process, inputs, **arguments) -> scores``.
    multi_process_hook: Callable[..., Any]

    def _inference(self, inputs: list[Any], *, prompt: str | None, batch_size: int, show_progress_bar: bool,
                   activation_fn: Any, apply_softmax: bool | None, device: str | torch.device | None = None,
                   **kwargs: Any) -> torch.Tensor:
        arguments = {"prompt": prompt, "batch_size": batch_size, "show_progress_bar": show_progress_bar,
                     "activation_fn": activation_fn, "apply_softmax": apply_softmax, "device": device}
        handled = self.inference_hook(inputs, forward_kwargs=kwargs, **arguments)
        if handled is not None:
            return handled
        return super()._inference(inputs, **arguments, **kwargs)

    def _multi_process(self, inputs: Any, show_progress_bar: bool | None = True, pool: dict[str, Any] | None = None,
                       device: Any = None, chunk_size: int | None = None, **kwargs: Any) -> Any:
        return self.multi_process_hook(super()._multi_process, inputs, show_progress_bar=show_progress_bar, pool=pool,
                                       device=device, chunk_size=chunk_size, **kwargs)


class MultiVectorEncoderHooks(LanguageMajorSorting):
    """``MultiVectorEncoder``'s private steps, forwarded to hooks of the model class.

    * ``_inference`` (6.2+): what a pool worker calls for its chunk, bypassing ``encode``; without
      this every ColBERT-XM worker ran the stock batching. :meth:`inference_hook` returns ``None``
      for the stock step.
    * ``_multi_process``: the pool call; :meth:`multi_process_hook` chooses the chunk size.
    """

    #: Provided by the model class: ``(inputs, **step arguments) -> embeddings``, or ``None`` for stock.
    inference_hook: Callable[..., Any]
    #: Provided by the model class: ``(stock_multi_process, inputs, **arguments) -> embeddings``.
    multi_process_hook: Callable[..., Any]

    def _inference(self, inputs: list[Any], **kwargs: Any) -> Any:
        handled = self.inference_hook(inputs, **kwargs)
        if handled is not None:
            return handled
        return super()._inference(inputs, **kwargs)

    def _multi_process(self, inputs: Any, show_progress_bar: bool | None = True, pool: dict[str, Any] | None = None,
                       device: Any = None, chunk_size: int | None = None, **kwargs: Any) -> Any:
        return self.multi_process_hook(super()._multi_process, inputs, show_progress_bar=show_progress_bar, pool=pool,
                                       device=device, chunk_size=chunk_size, **kwargs)


def placement_is_delegated(model: torch.nn.Module) -> bool:
    """``BaseModel._placement_is_delegated``: the model's modules are placed by accelerate (``device_map``).

    The fast path moves the model to one device itself, so it stays off for such a model.
    """
    return bool(getattr(model, "_placement_is_delegated", False))


def skiplist_ids(mask: torch.nn.Module) -> torch.Tensor | None:
    """``MultiVectorMask._skiplist_ids``: the token ids the mask drops from documents (resolved from its words).

    The fast document head drops the same ids itself; ``None`` where the attribute is gone, which
    keeps the stock path.
    """
    return getattr(mask, "_skiplist_ids", None)


def embed_document_columns(model: torch.nn.Module, columns: list[dict[str, Any]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``sentence_transformers.base.losses.merged_forward.embed_columns_padded``: the document columns in one forward.

    What the stock multi-vector losses use: homogeneous columns (same feature keys) are padded and
    concatenated into one ``batch * columns``-row forward pass (``lang_ids`` included), which kept the
    GPU busy where one forward per column of 32 rows left it waiting on kernel launches
    (``ColBERTXMLoss`` measured 1.5x slower on an H200 with one forward per column). Returns per-column
    ``(batch, tokens, dim)`` embeddings and boolean scoring masks. Where the helper is gone, each
    column is embedded on its own (same values, slower).
    """
    try:
        from sentence_transformers.base.losses.merged_forward import embed_columns_padded
    except ImportError:
        embed_columns_padded = None
    if embed_columns_padded is not None:
        return embed_columns_padded(model, columns, None, task_default="document")
    outputs = [model(dict(column), task=column.get("task", "document")) for column in columns]
    return [out["token_embeddings"] for out in outputs], [out["attention_mask"].bool() for out in outputs]
