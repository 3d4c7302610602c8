"""Tiny XMOD checkpoints in the layouts of ``antoinelouis/mono-xm`` and ``antoinelouis/colbert-xm``.

They have random weights and a few thousand parameters per adapter, build in about a second and are
bit-for-bit reproducible from their arguments: a test can rebuild the exact checkpoint that a
fixture was computed on. Weights are drawn with a large ``initializer_range`` so that two adapters
give visibly different outputs; with the default 0.02 a wrong language would go unnoticed.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import XLMRobertaTokenizer, XmodConfig, XmodForSequenceClassification, XmodModel

from xm_integrations.languages.resolution import XMOD_LANGUAGE_CODES
from xm_integrations.testing.corpus import SAMPLE_PASSAGES, SAMPLE_QUERIES

__all__ = ["TINY_LANGUAGES", "build_tiny_colbert_xm", "build_tiny_mono_xm", "build_tiny_tokenizer"]

#: The tiny checkpoints carry every adapter of ``facebook/xmod-base``, like the real ones.
TINY_LANGUAGES: tuple[str, ...] = XMOD_LANGUAGE_CODES

_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Like XLM-R's real vocabulary, some punctuation has no word-start piece and tokenizes as ``▁`` + char.
_NO_WORD_START = set("'\"#$%&*+/<=>@\\^_`|~")
_WORD = re.compile(r"\w+", re.UNICODE)


def _training_text() -> list[str]:
    texts = [text for passages in SAMPLE_PASSAGES.values() for text in passages]
    return texts + list(SAMPLE_QUERIES.values())


def _unigram_vocab() -> list[tuple[str, float]]:
    """A sentencepiece-style Unigram vocabulary built by counting, not training, so it never varies.

    Pieces are whole words (``▁word``) scored by log frequency, then single characters with and
    without the ``▁`` word-start marker, so any text made of known characters tokenizes, and the
    bare ``▁`` piece exists (colbert-ai's punctuation skiplist depends on it).
    """
    texts = [unicodedata.normalize("NFKC", text) for text in _training_text()]
    words = Counter(word for text in texts for word in _WORD.findall(text))
    chars = sorted({char for text in texts for char in text if not char.isspace()}
                   | set(string.ascii_letters + string.digits + string.punctuation))
    total = sum(words.values())
    vocab: list[tuple[str, float]] = [(token, 0.0) for token in _SPECIAL_TOKENS]
    vocab.append(("▁", -2.0))
    for word, count in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(word) > 1:
            vocab.append((f"▁{word}", math.log(count / total)))
    for char in chars:
        if char not in _NO_WORD_START:
            vocab.append((f"▁{char}", -12.0))
        vocab.append((char, -13.0))
    return vocab


def build_tiny_tokenizer() -> XLMRobertaTokenizer:
    """An XLM-R tokenizer (``<s> <pad> </s> <unk> <mask>`` = ids 0 to 4) over a tiny vocabulary.

    ``model_max_length`` is 512, as in XLM-R's published tokenizer, so that stock loaders truncate
    long inputs the way they do on the real checkpoints.
    """
    return XLMRobertaTokenizer(vocab=_unigram_vocab(), model_max_length=512)


def _tiny_config(languages: tuple[str, ...], default_language: str | None, **kwargs) -> XmodConfig:
    tokenizer = build_tiny_tokenizer()
    return XmodConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        initializer_range=0.2,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        languages=list(languages),
        default_language=default_language,
        **kwargs,
    )


def build_tiny_mono_xm(
    path: str | Path,
    *,
    languages: tuple[str, ...] = TINY_LANGUAGES,
    default_language: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny checkpoint laid out like ``antoinelouis/mono-xm``.

    ``XmodForSequenceClassification`` with one label, ``config.json``, ``model.safetensors`` and the
    tokenizer files. Like the published checkpoint it has no ``default_language`` unless one is
    given, so that the "Input language unknown" failure of stock loaders is reproduced.

    Returns:
        The folder.
    """
    path = Path(path)
    torch.manual_seed(seed)
    config = _tiny_config(languages, default_language, num_labels=1, architectures=["XmodForSequenceClassification"])
    model = XmodForSequenceClassification(config).eval()
    model.save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


def colbert_artifact_metadata(*, dim: int, query_maxlen: int, doc_maxlen: int, name: str) -> dict:
    """The fields colbert-ai 0.2.22 writes to ``artifact.metadata`` (``ColBERTConfig``)."""
    return {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "ncells": None,
        "centroid_score_threshold": None,
        "ndocs": None,
        "load_index_with_mmap": False,
        "index_path": None,
        "index_bsize": 64,
        "nbits": 1,
        "kmeans_niters": 4,
        "resume": False,
        "pool_factor": 1,
        "clustering_mode": "hierarchical",
        "protected_tokens": 0,
        "similarity": "cosine",
        "bsize": 32,
        "accumsteps": 1,
        "lr": 3e-06,
        "maxsteps": 200000,
        "save_every": None,
        "warmup": 20000,
        "warmup_bert": None,
        "relu": False,
        "nway": 2,
        "use_ib_negatives": True,
        "reranker": False,
        "distillation_alpha": 1.0,
        "ignore_scores": False,
        "model_name": name,
        "query_maxlen": query_maxlen,
        "attend_to_mask_tokens": True,
        "interaction": "colbert",
        "dim": dim,
        "doc_maxlen": doc_maxlen,
        "mask_punctuation": True,
        "checkpoint": "facebook/xmod-base",
        "triples": None,
        "collection": None,
        "queries": None,
        "index_name": None,
        "overwrite": False,
        "root": "experiments",
        "experiment": "colbert-xm",
        "index_root": None,
        "name": name,
        "rank": 0,
        "nranks": 1,
        "amp": True,
        "gpus": 1,
        "avoid_fork_if_possible": False,
        "meta": {"hostname": "tiny", "git_branch": None, "git_hash": None, "git_commit_datetime": None,
                 "current_datetime": None, "cmd": None, "version": "colbert-v0.4"},
    }


def build_tiny_colbert_xm(
    path: str | Path,
    *,
    languages: tuple[str, ...] = TINY_LANGUAGES,
    default_language: str | None = None,
    dim: int = 32,
    query_maxlen: int = 32,
    doc_maxlen: int = 256,
    seed: int = 0,
) -> Path:
    """Write a tiny checkpoint laid out like colbert-ai's ``HF_ColBERT`` save of ``antoinelouis/colbert-xm``.

    ``config.json`` (``"architectures": ["HF_ColBERT"]``, ``model_type`` ``xmod``), one
    ``model.safetensors`` holding the encoder under ``roberta.*`` and the projection as
    ``linear.weight`` (``dim x hidden``, no bias), ``artifact.metadata`` with colbert-ai's fields,
    and the tokenizer files.

    Returns:
        The folder.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _tiny_config(languages, default_language, architectures=["HF_ColBERT"])
    encoder = XmodModel(config, add_pooling_layer=False).eval()
    linear = torch.nn.Linear(config.hidden_size, dim, bias=False)
    torch.nn.init.normal_(linear.weight, std=config.initializer_range)
    tensors = {f"roberta.{key}": value.contiguous() for key, value in encoder.state_dict().items()}
    tensors["linear.weight"] = linear.weight.detach().contiguous()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(path)
    metadata = colbert_artifact_metadata(dim=dim, query_maxlen=query_maxlen, doc_maxlen=doc_maxlen, name="colbert-xm")
    (path / "artifact.metadata").write_text(json.dumps(metadata, indent=4) + "\n")
    build_tiny_tokenizer().save_pretrained(path)
    return path
