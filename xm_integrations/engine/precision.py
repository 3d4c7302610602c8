"""What the fast path computes in: fp16 matrix products on CUDA (autocast over float32 weights), float32 on CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from xm_integrations.engine.config import resolve_fast_inference

__all__ = ["default_autocast_dtype", "fast_path_enabled", "precision"]


def fast_path_enabled(setting: Any, device: Any) -> bool:
    """Whether a model class takes its fast path for a call on ``device`` (the call's ``device=``).

    ``setting`` is the class's ``fast_inference`` argument (default ``True``; a
    :class:`~xm_integrations.FastInferenceConfig` means on). The fast path
    measured faster on every device: 12-14x the best stock
    configuration on an H200, and 1.3-2.9x the stock batching on a 2-core CPU since tokenization
    goes straight through the Rust tokenizer and languages share batches (``benchmarks/NOTES.md``).
    A list of devices means a pool, whose workers decide for themselves.
    """
    return resolve_fast_inference(setting) is not None and not isinstance(device, list)


def default_autocast_dtype(device: torch.device | str, weight_dtype: torch.dtype = torch.float32) -> torch.dtype | None:
    """What the fast path runs float32 weights' matrix products in: fp16 under autocast on CUDA, nothing on CPU.

    Measured on an H200 (``benchmarks/NOTES.md``): ``MonoXM`` with fp16 autocast over float32 weights,
    layer norms and residual stream is 12-14x the best stock configuration
    (``FlagReranker(use_fp16=True)``) with less than half its score error (max relative error
    2-3e-4 against 7e-4 to 1e-3), and it is how colbert-ai encodes on a GPU (its ``Checkpoint``
    runs under ``torch.cuda.amp.autocast``). Weights already in half precision (a model loaded with
    ``dtype=torch.float16``) run as they are: ``None``, since autocast would only add float32 layer
    norms around them. CPU stays float32 (the CPU target is no regression against stock float32).
    """
    if torch.device(device).type != "cuda" or weight_dtype != torch.float32:
        return None
    return torch.float16


@contextlib.contextmanager
def precision(device: torch.device | str, dtype: torch.dtype | None, *, autocast: bool = False) -> Iterator[None]:
    """Run the enclosed forward passes with float32 accumulation in the matrix units.

    ``autocast=True`` keeps float32 weights and runs the matrix products in ``dtype`` (layer norms,
    softmax and the residual stream stay float32): slower than half-precision weights, closer to
    float32. Otherwise the model's own weight dtype decides and this only sets the accumulation.
    """
    device = torch.device(device)
    saved = None
    if device.type == "cuda":
        matmul = torch.backends.cuda.matmul
        saved = (matmul.allow_bf16_reduced_precision_reduction, matmul.allow_fp16_reduced_precision_reduction)
        matmul.allow_bf16_reduced_precision_reduction = False
        matmul.allow_fp16_reduced_precision_reduction = False
    try:
        if autocast and dtype is not None and dtype != torch.float32:
            with torch.autocast(device.type, dtype=dtype):
                yield
        else:
            yield
    finally:
        if saved is not None:
            matmul.allow_bf16_reduced_precision_reduction, matmul.allow_fp16_reduced_precision_reduction = saved
