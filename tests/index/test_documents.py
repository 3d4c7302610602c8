"""Packing document embeddings into the stored form, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xm_integrations.errors import InvalidArgumentError
from xm_integrations.index.documents import pack_float16, pack_tokens


def _documents() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((length, 8)).astype(np.float32) for length in (3, 1, 5)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_pack_tokens_concatenates_casts_and_offsets_like_numpy(dtype):
    documents = _documents()
    mixed = [documents[0], torch.from_numpy(documents[1]).double(), torch.from_numpy(documents[2])]
    packed = pack_tokens(mixed, 8, dtype)
    expected = np.concatenate(documents).astype(np.float16 if dtype == torch.float16 else np.float32)
    assert packed.tokens.dtype == dtype and packed.tokens.device.type == "cpu"
    np.testing.assert_array_equal(packed.tokens.numpy(), expected)
    assert packed.offsets.tolist() == [0, 3, 4, 9]
    np.testing.assert_array_equal(pack_float16(documents).tokens.numpy(), np.concatenate(documents).astype(np.float16))


def test_pack_tokens_refuses_non_finite_values_and_float16_overflow():
    documents = _documents()
    documents[1][0, 2] = np.nan
    with pytest.raises(InvalidArgumentError):
        pack_tokens(documents, 8, torch.float32)
    large = [np.full((2, 8), 1e6, dtype=np.float32)]
    with pytest.raises(InvalidArgumentError, match="float16"):
        pack_tokens(large, 8, torch.float16)
    assert pack_tokens(large, 8, torch.float32).tokens.max().item() == 1e6  # float32 holds it
    with pytest.raises(InvalidArgumentError):
        pack_tokens(documents[:1], 4, torch.float32)  # wrong dim
