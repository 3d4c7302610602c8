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
    :class:`~xm_integrations.FastInferenceConfig` means on); it is the default on every device,
    since it measured faster on each (``docs/performance.md``). A list of devices means a pool,
    whose workers decide for themselves.
    """
    return resolve_fast_inference(setting) is not None and not isinstance(device, list)


def default_autocast_dtype(device: torch.device | str, weight_dtype: torch.dtype = torch.float32) -> torch.dtype | None:
    """What the fast path runs float32 weights' matrix products in: fp16 under autocast on CUDA, nothing on CPU.

    fp16 matrix products over float32 weights, layer norms and residual stream keep scores within
    a few 1e-4 of float32, and are how colbert-ai encodes on a GPU (its ``Checkpoint`` runs under
    ``torch.cuda.amp.autocast``). Weights already in half precision (a model loaded with
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
