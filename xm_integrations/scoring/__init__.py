"""Late-interaction scoring: MaxSim over token embeddings, and its fused Triton kernel for CUDA.

Owns :func:`maxsim`, :func:`maxsim_pairwise`, the :class:`PackedTokens` store layout and the padding
helpers (:mod:`.late_interaction`), and the CUDA kernel they dispatch to (:mod:`.triton_kernel`).
Imports torch and numpy only, never a model: the index and the evaluation code score with it too.
No submodule shares a name with a function it exports, so ``from xm_integrations.scoring import
maxsim`` is the function whatever was imported first.
"""

from __future__ import annotations

from xm_integrations.scoring.late_interaction import (
    PackedTokens,
    maxsim,
    maxsim_pairwise,
    pack_token_embeddings,
    pad_token_embeddings,
)

__all__ = ["PackedTokens", "maxsim", "maxsim_pairwise", "pack_token_embeddings", "pad_token_embeddings"]
