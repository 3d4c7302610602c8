"""colbert-ai 0.2.22's tokenization of queries and documents, which ColBERT-XM was trained with.

* Query: tokenize to ``query_maxlen - 1`` with ``padding="max_length"``, insert the query marker id
  at position 1, replace pads by ``<mask>`` (query augmentation), attend to them if configured.
* Document: tokenize to ``doc_maxlen - 1`` (longest padding), insert the document marker id at
  position 1; pads and the punctuation skiplist are dropped after the encoder.

The marker ids are ``convert_tokens_to_ids("[unused0]")`` / ``("[unused1]")``: on XLM-R's
vocabulary both are ``<unk>`` (3), inserted as an id, never as text.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers.base.modules import Transformer
from torch import Tensor

from xm_integrations.compat.log_filters import DropAll, log_filter

__all__ = [
    "PROBE_TEXTS",
    "ColBERTEncoding",
    "colbert_skiplist_ids",
    "stock_tokenization_differences",
    "tokenize_documents",
    "tokenize_queries",
]


@dataclass(frozen=True)
class ColBERTEncoding:
    """What colbert-ai needs to tokenize one checkpoint's queries and documents.

    Attributes:
        query_maxlen: Every query is exactly this many tokens (marker included).
        doc_maxlen: Documents are truncated to this many tokens (marker included).
        attend_to_mask_tokens: Whether the encoder attends to the ``<mask>`` padding of queries.
        query_marker_id: Inserted at position 1 of every query (``<unk>`` on XLM-R vocabularies).
        doc_marker_id: Inserted at position 1 of every document.
        mask_token_id: Replaces the padding of queries (query augmentation).
        pad_token_id: The tokenizer's padding id.
    """

    query_maxlen: int
    doc_maxlen: int
    attend_to_mask_tokens: bool
    query_marker_id: int
    doc_marker_id: int
    mask_token_id: int
    pad_token_id: int


def colbert_skiplist_ids(tokenizer: Any, symbols: str = string.punctuation) -> set[int]:
    """colbert-ai's punctuation skiplist: the first id of encoding each symbol on its own.

    ``{tokenizer.encode(symbol, add_special_tokens=False)[0] for symbol in symbols}``
    (``colbert/modeling/colbert.py``). On sentencepiece vocabularies the first piece is the
    word-initial one (``▁.``), or the bare ``▁`` for symbols without such a piece; punctuation glued
    to a word (``Paris.`` gives ``▁Paris`` ``.``) is therefore *not* skipped. Computed from the
    tokenizer, never hard-coded, so that any vocabulary gets colbert-ai's own set.
    """
    ids: set[int] = set()
    for symbol in symbols:
        pieces = tokenizer.encode(symbol, add_special_tokens=False)
        if pieces:
            ids.add(int(pieces[0]))
    return ids


def _insert_column(tensor: Tensor, value: int) -> Tensor:
    """``tensor[:, :1] + [value] + tensor[:, 1:]``: colbert-ai's marker insertion after ``<s>``."""
    column = torch.full((tensor.shape[0], 1), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor[:, :1], column, tensor[:, 1:]], dim=1)


def tokenize_queries(tokenizer: Any, texts: Sequence[str], encoding: ColBERTEncoding) -> dict[str, Tensor]:
    """Tokenize queries as colbert-ai's ``QueryTokenizer.tensorize`` does.

    Tokenize to ``query_maxlen - 1`` with ``padding="max_length"`` (a long query loses its end but
    keeps ``</s>``), insert the query marker at position 1, replace every pad id by the mask id
    and, with ``attend_to_mask_tokens``, attend to those ``<mask>`` positions.

    Returns:
        ``input_ids``, ``attention_mask`` and ``query_expansion_positions`` (True where a pad was
        replaced, the key that sentence-transformers' ``MultiVectorMask`` reads so that every query
        position is scored, as colbert-ai scores them), each ``(n, query_maxlen)``.
    """
    batch = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=encoding.query_maxlen - 1,
        return_tensors="pt",
    )
    input_ids = _insert_column(batch["input_ids"], encoding.query_marker_id)
    attention_mask = _insert_column(batch["attention_mask"], 1)
    expansion = input_ids == encoding.pad_token_id
    input_ids = input_ids.masked_fill(expansion, encoding.mask_token_id)
    if encoding.attend_to_mask_tokens:
        attention_mask = attention_mask.masked_fill(input_ids == encoding.mask_token_id, 1)
    features = {"input_ids": input_ids, "attention_mask": attention_mask, "query_expansion_positions": expansion}
    if "token_type_ids" in batch:
        features["token_type_ids"] = _insert_column(batch["token_type_ids"], 0)
    return features


def tokenize_documents(tokenizer: Any, texts: Sequence[str], encoding: ColBERTEncoding) -> dict[str, Tensor]:
    """Tokenize documents as colbert-ai's ``DocTokenizer.tensorize`` does.

    Tokenize to ``doc_maxlen - 1`` (longest padding, longest-first truncation), then insert the
    document marker at position 1. Which positions are kept (not pad, not in the skiplist) is
    decided later by the ``MultiVectorMask`` module, whose skiplist holds colbert-ai's ids plus the
    pad id (colbert-ai drops pad *ids*, even a literal ``"<pad>"`` in the text).
    """
    batch = tokenizer(
        list(texts),
        padding="longest",
        truncation="longest_first",
        max_length=encoding.doc_maxlen - 1,
        return_tensors="pt",
    )
    features = {
        "input_ids": _insert_column(batch["input_ids"], encoding.doc_marker_id),
        "attention_mask": _insert_column(batch["attention_mask"], 1),
    }
    if "token_type_ids" in batch:
        features["token_type_ids"] = _insert_column(batch["token_type_ids"], 0)
    return features


# Texts whose tokenization is compared with the stock path on save: empty, leading and repeated
# spaces, punctuation, a non-Latin script, and one longer than any query.
PROBE_TEXTS: tuple[str, ...] = (
    "",
    " leading space",
    "two  spaces and punctuation: (a), b; c!",
    "光合作用",
    "long " * 600,
)


def stock_tokenization_differences(model: Any, texts: Sequence[str] = PROBE_TEXTS) -> list[str]:
    """Where the stock ``Transformer`` (marker prompt as text) and colbert-ai's insertion disagree.

    Returns:
        One line per text and task whose ``input_ids`` or ``attention_mask`` differ; empty when the
        stock modules reproduce colbert-ai's tokenization on ``texts``.
    """
    differences = []
    for task in ("query", "document"):
        ours = model.preprocess(list(texts), task=task)
        # The stock path warns (once per process) about queries that fill query_maxlen; here that is the point.
        with log_filter(Transformer.__module__, DropAll()):
            stock = model._transformer().preprocess(list(texts), prompt=model.prompts.get(task), task=task)
        for index, text in enumerate(texts):
            for key in ("input_ids", "attention_mask"):
                mine, theirs = ours[key][index], stock[key][index]
                if mine.shape != theirs.shape or not torch.equal(mine, theirs):
                    differences.append(f"{task} {text[:40]!r}: {key} {mine.tolist()[:12]} vs {theirs.tolist()[:12]}")
                    break
    return differences
