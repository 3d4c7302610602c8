"""The worker of ``XMFlagReranker``'s multi-device pool: it reports every error and keeps serving.

FlagEmbedding's own worker ends its loop on the first exception without a word, and the caller then
waits forever for the missing chunk.
"""

from __future__ import annotations

from typing import Any

from xm_integrations.models.core import select_worker_device, serve_pool_chunks

__all__ = ["serve_device"]


def serve_device(device: str, reranker: Any, input_queue: Any, output_queue: Any) -> None:
    """Score ``[call, chunk_id, pairs, kwargs]`` chunks on ``device`` until terminated (a process target)."""
    select_worker_device(device)
    serve_pool_chunks(
        input_queue, output_queue,
        lambda pairs, kwargs: reranker.compute_score_single_gpu(pairs, device=device, **kwargs),
        f"{type(reranker).__name__} pool worker on {device}",
    )
