"""Token-embedding stores MaxSim reads without copying: padded tensors with masks, and :class:`PackedTokens`.

:class:`PackedTokens` (all token rows concatenated plus offsets) is the layout a document index
keeps on disk or in memory without padding; :func:`pad_token_embeddings` and
:func:`pack_token_embeddings` convert lists into either form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["PackedTokens", "pack_token_embeddings", "pad_token_embeddings"]


@dataclass(frozen=True)
class PackedTokens:
    """Variable-length token embeddings stored without padding: ``tokens[offsets[i]:offsets[i+1]]``
    are the token rows of item ``i``.

    This is the layout a document store keeps (one ``(total_tokens, dim)`` matrix, memory-mappable,
    no padding waste, no per-document Python object) and the fastest input for :func:`maxsim`: when
    every item has the same length it is scored as a zero-copy ``(n, length, dim)`` view.

    Attributes:
        tokens: ``(total_tokens, dim)`` floating-point tensor.
        offsets: ``(n + 1,)`` int64 CPU tensor, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == total_tokens``. Kept on the CPU because chunk planning reads it on the
            host; a CUDA tensor given here is copied to the CPU.
    """

    tokens: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        tokens, offsets = self.tokens, self.offsets
        if isinstance(tokens, np.ndarray):
            tokens = torch.from_numpy(tokens)
        if not isinstance(offsets, Tensor):
            offsets = torch.as_tensor(np.asarray(offsets), dtype=torch.int64)
        if tokens.dim() != 2:
            raise InvalidArgumentError(f"PackedTokens.tokens must be 2-D (total_tokens, dim), got shape {tuple(tokens.shape)}.")
        if offsets.dim() != 1 or offsets.numel() < 1:
            raise InvalidArgumentError(f"PackedTokens.offsets must be 1-D with n + 1 >= 1 entries, got shape {tuple(offsets.shape)}.")
        if offsets.is_floating_point() or offsets.dtype == torch.bool:
            raise ArgumentTypeError(f"PackedTokens.offsets must be integer, got {offsets.dtype}.")
        offsets = offsets.to(device="cpu", dtype=torch.int64)
        if int(offsets[0]) != 0 or int(offsets[-1]) != tokens.shape[0]:
            raise InvalidArgumentError(
                f"PackedTokens.offsets must start at 0 and end at total_tokens={tokens.shape[0]}, "
                f"got {int(offsets[0])} .. {int(offsets[-1])}."
            )
        if offsets.numel() > 1 and bool((offsets[1:] < offsets[:-1]).any()):
            raise InvalidArgumentError("PackedTokens.offsets must be non-decreasing.")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_list(cls, embeddings: Sequence[Tensor]) -> PackedTokens:
        """Concatenate a list of ``(tokens_i, dim)`` tensors (see :func:`pack_token_embeddings`)."""
        return pack_token_embeddings(embeddings)

    @classmethod
    def from_padded(cls, embeddings: Tensor, mask: Tensor | None = None) -> PackedTokens:
        """Drop the padding of a ``(n, max_tokens, dim)`` tensor; ``mask`` is True on real tokens
        (None: every token is real). Real tokens keep their order within each item."""
        embeddings = _as_tensor(embeddings, "embeddings")
        if embeddings.dim() != 3:
            raise InvalidArgumentError(f"expected a (n, max_tokens, dim) tensor, got shape {tuple(embeddings.shape)}.")
        n, width, _ = embeddings.shape
        if mask is None:
            offsets = torch.arange(n + 1, dtype=torch.int64) * width
            return cls(embeddings.reshape(n * width, -1), offsets)
        mask = _check_mask(mask, embeddings, "mask")
        lengths = mask.sum(dim=1).cpu()
        offsets = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        return cls(embeddings[mask], offsets)

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def __getitem__(self, index: int) -> Tensor:
        if index < 0:
            index += len(self)
        return self.tokens[int(self.offsets[index]) : int(self.offsets[index + 1])]

    @property
    def dim(self) -> int:
        return self.tokens.shape[1]

    @property
    def lengths(self) -> Tensor:
        """``(n,)`` int64 CPU tensor of token counts."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def uniform_length(self) -> int | None:
        """The common token count when every item has the same one (then the store is a plain
        ``(n, length, dim)`` view), else None."""
        n = len(self)
        if n == 0:
            return None
        total = self.tokens.shape[0]
        if total % n:
            return None
        length = total // n
        expected = torch.arange(n + 1, dtype=torch.int64) * length
        return length if torch.equal(self.offsets, expected) else None

    def to(self, *args, **kwargs) -> PackedTokens:
        """Move or cast ``tokens`` (offsets stay on the CPU)."""
        return PackedTokens(self.tokens.to(*args, **kwargs), self.offsets)


def pad_token_embeddings(
    embeddings: Sequence[Tensor],
    *,
    padding_value: float = 0.0,
    dim: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Pad ragged ``(tokens_i, dim)`` tensors into ``(n, max_tokens, dim)`` plus a boolean mask
    (True = real token).

    On CPU this is ``pad_sequence`` (one memcpy per item, the fastest there); on an accelerator it
    is a single ``cat`` plus one ``index_copy_``, a constant number of kernel launches instead of one
    per item (which dominates for thousands of short items). Zero-token items are allowed.

    Args:
        embeddings: Non-empty sequence of 2-D tensors with equal ``dim``, dtype and device (or empty,
            if ``dim`` is given: returns ``(0, 0, dim)`` float32 and ``(0, 0)``).
        padding_value: Value written into padding rows. Scoring never looks at them (the mask is
            authoritative), so this only matters to other consumers.
        dim: Embedding size; required only to pad an empty sequence.
    """
    tensors = _as_tensor_list(embeddings, "embeddings")
    if not tensors:
        if dim is None:
            raise InvalidArgumentError("cannot pad an empty sequence without knowing the embedding dim: pass dim=.")
        return torch.zeros(0, 0, dim), torch.zeros(0, 0, dtype=torch.bool)
    dim0, length_list = _check_ragged(tensors, "embeddings")
    if dim is not None and dim != dim0:
        raise InvalidArgumentError(f"dim={dim} was given but the embeddings have dim {dim0}.")
    lengths = torch.tensor(length_list, dtype=torch.int64)
    device = tensors[0].device
    width = int(lengths.max())
    positions = torch.arange(width)
    mask = (positions.unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    if device.type == "cpu":
        padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=padding_value)
        if padded.shape[1] != width:  # only when every item is empty
            padded = padded.new_full((len(tensors), width, dim0), padding_value)
        return padded, mask
    flat = torch.cat(tensors, dim=0)
    padded = flat.new_full((len(tensors) * width, dim0), padding_value)
    if flat.shape[0]:
        rows = mask.reshape(-1).nonzero().squeeze(1)
        padded.index_copy_(0, rows, flat)
    return padded.view(len(tensors), width, dim0), mask


def pack_token_embeddings(embeddings: Sequence[Tensor]) -> PackedTokens:
    """Concatenate ragged ``(tokens_i, dim)`` tensors into a :class:`PackedTokens` store (one copy,
    no padding). The natural form for a document index: score it with :func:`maxsim` directly."""
    tensors = _as_tensor_list(embeddings, "embeddings")
    if not tensors:
        raise InvalidArgumentError("cannot pack an empty sequence (the embedding dim is unknown).")
    _, length_list = _check_ragged(tensors, "embeddings")
    lengths = torch.tensor(length_list, dtype=torch.int64)
    offsets = torch.zeros(len(tensors) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return PackedTokens(torch.cat(tensors, dim=0), offsets)


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ArgumentTypeError(f"`{name}` must be a torch.Tensor or numpy array, got {type(x).__name__}.")


def _check_ragged(tensors: list[Tensor], name: str) -> tuple[int, list[int]]:
    """Validate a list of ``(tokens_i, dim)`` tensors; return ``dim`` and the lengths. One pass over shapes only:
    this runs over every document of a corpus, so per-item cost matters (~0.1 us per item)."""
    shapes = [t.shape for t in tensors]
    if any(len(shape) != 2 for shape in shapes):
        i = next(i for i, shape in enumerate(shapes) if len(shape) != 2)
        raise InvalidArgumentError(f"`{name}[{i}]` must be 2-D (tokens, dim), got shape {tuple(shapes[i])}.")
    dim = shapes[0][1]
    if any(shape[1] != dim for shape in shapes):
        i = next(i for i, shape in enumerate(shapes) if shape[1] != dim)
        raise InvalidArgumentError(f"`{name}[{i}]` has dim {shapes[i][1]}, but `{name}[0]` has dim {dim}.")
    return dim, [shape[0] for shape in shapes]


def _as_tensor_list(x: Sequence, name: str) -> list[Tensor]:
    items = list(x)
    if all(isinstance(t, Tensor) for t in items):
        return items
    return [_as_tensor(t, f"{name}[{i}]") for i, t in enumerate(items)]


def _check_mask(mask, embeddings: Tensor, name: str) -> Tensor:
    mask = _as_tensor(mask, name)
    if mask.shape != embeddings.shape[:2]:
        raise InvalidArgumentError(
            f"`{name}` must have shape (n, max_tokens) = {tuple(embeddings.shape[:2])} to match the padded "
            f"embeddings {tuple(embeddings.shape)}, got {tuple(mask.shape)}."
        )
    if mask.dtype != torch.bool:
        mask = mask != 0  # e.g. a tokenizer's 0/1 attention mask
    if mask.device != embeddings.device:
        mask = mask.to(embeddings.device)
    return mask
