"""MaxSim behind sentence-transformers' ``similarity`` arguments and semantics, for ``ColBERTXM.similarity``.

``ColBERTXM.similarity`` / ``similarity_pairwise`` replace the stock ``MultiVectorEncoder`` methods,
so they take what those take (``a_mask``, ``b_mask``, ``chunk_elements``, ``device``,
``length_normalize``, which sentence-transformers' own multi-vector losses and evaluators pass) and
mean the same by them, while scoring with :func:`~xm_integrations.scoring.maxsim`:

* a padded 3-D tensor without a mask has its all-zero rows treated as padding (stock's rule; our
  :func:`maxsim` itself never guesses padding);
* a document without any real token scores ``-1e9`` (stock's sentinel, so it ranks below every
  real document; :func:`maxsim` gives ``0.0``);
* scores are float32, on the documents' device, whatever ``device`` they were computed on.

Our own options (``query_mask``, ``document_mask``, ``chunk_size``, ``query_chunk_size``,
``memory_budget``) are accepted too; giving a stock name and its counterpart together is an error.

Training: :func:`maxsim` reuses buffers and the Triton kernel has no backward, so when gradients
are enabled and an input requires them, scores come from stock
:func:`sentence_transformers.util.similarity.maxsim` (differentiable, same semantics). Inference
(``torch.no_grad``, ``inference_mode``, or inputs without gradients) keeps the fast path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from xm_integrations.errors import ArgumentTypeError
from xm_integrations.scoring.late_interaction import maxsim, maxsim_pairwise, pad_token_embeddings

__all__ = ["EMPTY_DOCUMENT_SCORE", "stock_similarity"]

#: What a document without any real token scores in sentence-transformers' MaxSim (checked against
#: stock's output in the tests): far below any real score, finite so that losses stay finite.
EMPTY_DOCUMENT_SCORE = -1e9

_STOCK_TO_OURS = {"a_mask": "query_mask", "b_mask": "document_mask"}


def stock_similarity(embeddings1: Any, embeddings2: Any, *, pairwise: bool, length_normalize: bool,
                     **kwargs: Any) -> Tensor:
    """MaxSim (``pairwise``: of item ``i`` against item ``i``) with stock ``MultiVectorEncoder.similarity``'s semantics.

    Raises:
        TypeError: an argument neither stock nor :func:`maxsim` takes, or a stock argument given
            together with its :func:`maxsim` counterpart.
    """
    if torch.is_grad_enabled() and (_requires_grad(embeddings1) or _requires_grad(embeddings2)):
        return _differentiable_similarity(embeddings1, embeddings2, pairwise=pairwise,
                                          length_normalize=length_normalize, **kwargs)
    for stock_name, our_name in _STOCK_TO_OURS.items():
        if stock_name in kwargs:
            if our_name in kwargs:
                raise ArgumentTypeError(f"similarity() got both {stock_name}= and {our_name}=; they are the same mask, pass one.")
            kwargs[our_name] = kwargs.pop(stock_name)
    chunk_elements = kwargs.pop("chunk_elements", None)
    if chunk_elements is not None:
        if "memory_budget" in kwargs:
            raise ArgumentTypeError("similarity() got both chunk_elements= and memory_budget=; pass one.")
        kwargs["memory_budget"] = int(chunk_elements) * 4  # elements of float32 working set, in bytes
    device = kwargs.pop("device", None)
    queries, query_mask = _side(embeddings1, kwargs.pop("query_mask", None))
    documents, document_mask = _side(embeddings2, kwargs.pop("document_mask", None))
    result_device = _device_of(documents) or _device_of(queries) or torch.device("cpu")
    if device is not None:
        queries, query_mask = _to(queries, query_mask, torch.device(device))
        documents, document_mask = _to(documents, document_mask, torch.device(device))
    score = maxsim_pairwise if pairwise else maxsim
    scores = score(queries, documents, query_mask=query_mask, document_mask=document_mask,
                   reduce="mean" if length_normalize else "sum", **kwargs)
    empty = _empty_documents(documents, document_mask)
    if empty is not None:  # filled unconditionally: asking whether any is empty would wait for the GPU
        empty = empty.to(scores.device)
        scores = scores.masked_fill(empty if pairwise else empty[None, :], EMPTY_DOCUMENT_SCORE)
    return scores.float().to(result_device)


def _requires_grad(embeddings: Any) -> bool:
    if isinstance(embeddings, Tensor):
        return embeddings.requires_grad
    return isinstance(embeddings, (list, tuple)) and any(
        isinstance(item, Tensor) and item.requires_grad for item in embeddings
    )


#: Options of ours that only choose how :func:`maxsim` chunks its work: without effect on the scores.
_SPEED_ONLY = frozenset({"chunk_size", "query_chunk_size"})


def _differentiable_similarity(embeddings1: Any, embeddings2: Any, *, pairwise: bool, length_normalize: bool,
                               **kwargs: Any) -> Tensor:
    """Stock ``maxsim`` / ``maxsim_pairwise`` (autograd-friendly), with our option names translated to stock's."""
    from sentence_transformers.util.similarity import maxsim as stock_maxsim
    from sentence_transformers.util.similarity import maxsim_pairwise as stock_maxsim_pairwise

    for stock_name, our_name in _STOCK_TO_OURS.items():
        if our_name in kwargs:
            if stock_name in kwargs:
                raise ArgumentTypeError(f"similarity() got both {stock_name}= and {our_name}=; they are the same mask, pass one.")
            kwargs[stock_name] = kwargs.pop(our_name)
    if "memory_budget" in kwargs:
        if "chunk_elements" in kwargs:
            raise ArgumentTypeError("similarity() got both chunk_elements= and memory_budget=; pass one.")
        kwargs["chunk_elements"] = max(1, int(kwargs.pop("memory_budget")) // 4)
    for name in _SPEED_ONLY & set(kwargs):
        kwargs.pop(name)
    score = stock_maxsim_pairwise if pairwise else stock_maxsim
    return score(embeddings1, embeddings2, length_normalize=length_normalize, **kwargs)


def _as_tensor(value: Any) -> Any:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _side(embeddings: Any, mask: Any) -> tuple[Any, Tensor | None]:
    """One side in :func:`maxsim`'s forms: a single 2-D item batched, list masks padded, zero rows as padding."""
    embeddings = _as_tensor(embeddings)
    if isinstance(mask, (list, tuple)):
        mask = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(_as_tensor(m)) for m in mask], batch_first=True)
    elif mask is not None:
        mask = torch.as_tensor(_as_tensor(mask))
    if isinstance(embeddings, Tensor) and embeddings.ndim == 2:
        embeddings = embeddings[None]
        mask = None if mask is None else mask.reshape(1, -1)
    if isinstance(embeddings, (list, tuple)):
        if mask is None:
            return list(embeddings), None
        embeddings, _ = pad_token_embeddings([torch.as_tensor(_as_tensor(item)) for item in embeddings])
    if isinstance(embeddings, Tensor) and embeddings.ndim == 3:
        if mask is None:
            mask = (embeddings != 0).any(dim=-1)  # stock: all-zero rows are padding
        else:
            width = embeddings.shape[1]
            mask = mask[:, :width] if mask.shape[-1] > width else mask
        return embeddings, mask.bool()
    return embeddings, mask


def _device_of(embeddings: Any) -> torch.device | None:
    if isinstance(embeddings, Tensor):
        return embeddings.device
    if isinstance(embeddings, list) and embeddings and isinstance(embeddings[0], Tensor):
        return embeddings[0].device
    return None


def _to(embeddings: Any, mask: Tensor | None, device: torch.device) -> tuple[Any, Tensor | None]:
    if isinstance(embeddings, Tensor):
        embeddings = embeddings.to(device)
    elif isinstance(embeddings, list):
        embeddings = [torch.as_tensor(_as_tensor(item)).to(device) for item in embeddings]
    return embeddings, None if mask is None else mask.to(device)


def _empty_documents(documents: Any, mask: Tensor | None) -> Tensor | None:
    """Which documents have no real token (stock's ``-1e9`` cases)."""
    if mask is not None:
        return ~mask.bool().any(dim=-1)
    if isinstance(documents, list):
        return torch.tensor([len(item) == 0 for item in documents], dtype=torch.bool)
    return None
