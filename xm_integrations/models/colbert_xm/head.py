"""The fast path's ColBERT-XM document head: projection, normalisation, and which tokens a document keeps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from torch import Tensor

from xm_integrations.compat.sentence_transformers import skiplist_ids
from xm_integrations.engine import UnsetBatchSize
from xm_integrations.engine.pipeline import encode_texts
from xm_integrations.engine.precision import default_autocast_dtype
from xm_integrations.engine.tokenization import tokenize
from xm_integrations.models.core import select_worker_device

__all__ = ["ColBERTDocumentHead", "colbert_document_ids", "encode_documents_fast", "fast_head_parts"]


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


@torch.inference_mode()
def encode_documents_fast(
    model: Any,
    texts: Sequence[Any],  # routed texts: each carries its lang_id
    *,
    batch_size: int = UnsetBatchSize(32),
    show_progress_bar: bool | None = None,
    convert_to_numpy: bool = False,
    device: str | torch.device | None = None,
    task: str | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
    output_value: str | None = "token_embeddings",
    normalize_embeddings: bool = False,
    truncate_dim: int | None = None,
) -> list[Any]:
    """Stock ``encode`` of routed documents through the fast path: the same list of ``(tokens, dim)``
    tensors (on the model's device, or NumPy arrays with ``convert_to_numpy``).

    Stock truncates the normalised vectors to ``truncate_dim`` and normalises them again; the
    first ``truncate_dim`` rows of the projection, normalised once, are the same vectors (a
    vector's direction does not depend on its scale) for a smaller matrix product.
    """
    config = model._fast_config()
    engine = config.engine_kwargs(batch_size)
    if show_progress_bar is None:
        show_progress_bar = logging.getLogger(MultiVectorEncoder.__module__).getEffectiveLevel() <= logging.INFO
    if device is not None:
        select_worker_device(device)  # in a pool worker: its GPU becomes the current device
        model.to(device)
    model.eval()
    weight, skiplist = model._fast_document_head_parts()
    if truncate_dim is None:
        truncate_dim = getattr(model, "truncate_dim", None)  # the model's default (sentence-transformers >= 6.3)
    if truncate_dim is not None:
        weight = weight[:truncate_dim]
    # NumPy outputs stay views into one host tensor per batch: an array pickles or saves only its own
    # rows, and a per-document copy would double the host memory traffic of every batch.
    head = ColBERTDocumentHead(weight, [] if skiplist is None else skiplist.to(weight.device),
                               out_device="cpu" if convert_to_numpy else None,
                               compact=not (config.share_batch_storage or convert_to_numpy))
    encoding, tokenizer = model.colbert_encoding, model.tokenizer

    def tokenize(chunk: Sequence[str]) -> list[list[int]]:
        return colbert_document_ids(tokenizer, chunk, doc_maxlen=encoding.doc_maxlen,
                                    marker_id=encoding.doc_marker_id)

    lang_ids = np.fromiter((text.lang_id for text in texts), dtype=np.int64, count=len(texts))
    xmod = model._xmod_model()
    vectors = encode_texts(
        xmod, tokenizer, [str(text) for text in texts], lang_ids, head=head, split=head.split,
        tokenize_fn=tokenize, autocast_dtype=default_autocast_dtype(model.device, xmod.dtype),
        show_progress_bar=show_progress_bar, progress_desc="Encoding documents", **engine,  # stock's label
    )
    if convert_to_numpy:
        return [vector.float().numpy() if vector.dtype == torch.bfloat16 else vector.numpy() for vector in vectors]
    return vectors
