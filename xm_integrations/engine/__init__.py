"""The fast inference path's public settings.

Owns :class:`FastInferenceConfig` (the knobs a user may set: token budget per forward pass, rows per
forward pass, tokenization chunks, input ordering, background tokenization, storage of returned
vectors) and the marker for a ``batch_size`` the caller did not give. Imports nothing heavy, so the
config can be built before torch is imported. The path itself still lives in
:mod:`xm_integrations.engine.pipeline`.
"""

from xm_integrations.engine.config import (
    DEFAULT_MAX_TOKENS_CPU,
    DEFAULT_MAX_TOKENS_CUDA,
    FastInferenceConfig,
    UnsetBatchSize,
    caller_batch_size,
    resolve_fast_inference,
)

__all__ = [
    "DEFAULT_MAX_TOKENS_CPU",
    "DEFAULT_MAX_TOKENS_CUDA",
    "FastInferenceConfig",
    "UnsetBatchSize",
    "caller_batch_size",
    "resolve_fast_inference",
]
