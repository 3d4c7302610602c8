"""Offline stand-ins for the Hub checkpoints: tiny, deterministic, laid out file for file like them.

The Hugging Face Hub is unreachable from our machines and CI, so tests, the demo and the benchmarks
build small XMOD checkpoints in seconds and, where loading by repo id matters, place them in a
Hugging Face hub cache that ``HF_HUB_OFFLINE=1`` resolves through huggingface_hub's own code. Imports
transformers and tokenizers, never the package's model classes (the tests compare those with
what it builds). :class:`LocalRayCluster` starts a real multi-node Ray cluster on one machine.
"""

from xm_integrations.testing.checkpoints import (
    TINY_LANGUAGES,
    build_tiny_colbert_xm,
    build_tiny_mono_xm,
    build_tiny_tokenizer,
)
from xm_integrations.testing.corpus import synthetic_passages
from xm_integrations.testing.hub_cache import populate_hub_cache
from xm_integrations.testing.ray_cluster import LocalRayCluster

__all__ = [
    "LocalRayCluster",
    "TINY_LANGUAGES",
    "build_tiny_colbert_xm",
    "build_tiny_mono_xm",
    "build_tiny_tokenizer",
    "populate_hub_cache",
    "synthetic_passages",
]
