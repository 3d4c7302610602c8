"""The fast path's ColBERT-XM document head: projection, normalisation, and which tokens a document keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from torch import Tensor

from xm_integrations.compat.sentence_transformers import skiplist_ids
from xm_integrations.engine.tokenization import tokenize

__all__ = ["ColBERTDocumentHead", "colbert_document_ids", "fast_head_parts"]


def colbert_document_ids(tokenizer: Any, texts: Sequence[str], *, doc_maxlen: int, marker_id: int) -> list[list[int]]:
    """colbert-ai 0.2.22's document tokenization as id lists: ``doc_maxlen - 1`` tokens, marker at position 1."""
    ids = tokenize(tokenizer, texts, max_length=doc_maxlen - 1)
    return [sequence[:1] + [marker_id] + sequence[1:] for sequence in ids]


class ColBERTDocumentHead:
    """``normalize(linear(hidden))`` per token, and which tokens a document keeps (real, not in the skiplist).

    Projection in the model's dtype with float32 accumulation, normalisation in float32, vectors
    stored in ``out_dtype`` (default: the model's dtype). :meth:`split` (one device synchronisation
    per batch, after everything is queued) gives each document's kept vectors on ``out_device``
    (default: where they were computed): compact tensors of their own, or with ``compact=False``
    views into one packed tensor per batch (no copy, but a kept view pins the whole batch).
    """

    def __init__(self, weight: Tensor, skiplist_ids: Sequence[int] | Tensor, *, out_dtype: torch.dtype | None = None,
                 out_device: torch.device | str | None = None, compact: bool = True) -> None:
        self.weight = weight
        self.skiplist = torch.as_tensor(list(skiplist_ids) if not isinstance(skiplist_ids, Tensor) else skiplist_ids,
                                        dtype=torch.long, device=weight.device)
        self.out_dtype = out_dtype
        self.out_device = None if out_device is None else torch.device(out_device)
        self.compact = compact

    def __call__(self, hidden: Tensor, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        projected = torch.nn.functional.linear(hidden.to(self.weight.dtype), self.weight)
        vectors = torch.nn.functional.normalize(projected.float(), p=2, dim=-1)
        vectors = vectors.to(self.out_dtype or self.weight.dtype)
        keep = attention_mask.bool()
        if self.skiplist.numel():
            keep &= ~torch.isin(input_ids, self.skiplist)
        return vectors, keep

    def split(self, output: tuple[Tensor, Tensor]) -> list[Tensor]:
        vectors, keep = output
        counts = keep.sum(dim=1).tolist()
        packed = vectors[keep]
        if self.out_device is not None and packed.device != self.out_device:
            packed = packed.to(self.out_device)
        pieces = torch.split(packed, counts)
        return [piece.clone() for piece in pieces] if self.compact else list(pieces)


def fast_head_parts(modules: list[torch.nn.Module]) -> tuple[Tensor, Tensor | None] | None:
    """The projection weight and skiplist ids of a ``Transformer, Dense, MultiVectorMask, Normalize``
    pipeline that :class:`ColBERTDocumentHead` reproduces exactly; ``None`` for any other pipeline."""
    if len(modules) != 4:
        return None
    transformer, dense, mask, normalize = modules
    if not (isinstance(transformer, Transformer) and isinstance(dense, Dense)
            and isinstance(mask, MultiVectorMask) and isinstance(normalize, Normalize)):
        return None
    if (getattr(transformer, "module_output_name", "token_embeddings") != "token_embeddings"
            or dense.linear.bias is not None or not isinstance(dense.activation_function, torch.nn.Identity)
            or getattr(dense, "use_residual", False)
            or getattr(dense, "module_input_name", None) != "token_embeddings"
            or getattr(dense, "module_output_name", None) != "token_embeddings"
            or getattr(normalize, "module_input_name", "token_embeddings") != "token_embeddings"
            or getattr(normalize, "module_output_name", "token_embeddings") != "token_embeddings"):
        return None
    if getattr(mask, "keep_only_token_ids", None) or skiplist_ids(mask) is None:
        return None
    skiplist = skiplist_ids(mask) if "document" in mask.skiplist_tasks else None
    return dense.linear.weight, skiplist
