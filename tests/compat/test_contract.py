"""The contract with the libraries we extend: every private or undocumented name xm_integrations uses still exists.

Each name is read, overridden or patched in exactly one place, ``xm_integrations/compat/`` (or, for
FlagEmbedding's public-but-undocumented ones, the integration that uses it). When an upgrade moves
one, this file fails in the test named for it, with a message saying what moved and which of our
features depends on it. Runs against the installed versions (CI: the newest that the pins allow).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest


def require(owner: object, name: str, why: str, parameters: tuple[str, ...] = ()) -> object:
    """``owner.name``, asserting it exists and takes ``parameters``; the failure says what moved and what breaks."""
    label = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', owner)}.{name}"
    assert hasattr(owner, name), (
        f"{label} is gone in the installed version: {why}. Update xm_integrations/compat/ for it.")
    value = inspect.getattr_static(owner, name)
    if parameters:
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        present = set(inspect.signature(function).parameters)
        missing = [parameter for parameter in parameters if parameter not in present]
        assert not missing, (f"{label} no longer takes {missing} (it takes {sorted(present)}): {why}. "
                             "Update xm_integrations/compat/ for it.")
    return value


# -- sentence-transformers --------------------------------------------------------------------------------------------


def test_sentence_transformers_cross_encoder_steps() -> None:
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.model import BaseModel

    require(CrossEncoder, "_inference", "MonoXM's pool workers take the fast path through this step",
            ("inputs", "prompt", "batch_size", "show_progress_bar", "activation_fn", "apply_softmax", "device"))
    require(BaseModel, "_multi_process", "MonoXM sends each pool worker two large chunks through it",
            ("inputs", "show_progress_bar", "pool", "device", "chunk_size"))
    length = require(BaseModel, "_input_length", "stock batching is sorted by adapter through it", ("sample",))
    assert isinstance(length, staticmethod), "BaseModel._input_length is no longer a staticmethod"
    assert isinstance(inspect.getattr_static(CrossEncoder, "_input_length"), staticmethod)
    require(BaseModel, "_report_worker_failure",
            "pool workers report errors themselves only from sentence-transformers 6.2, our floor")


def test_sentence_transformers_multi_vector_internals(tiny_colbert_xm: Path) -> None:
    from sentence_transformers.base.model import BaseModel

    from xm_integrations import ColBERTXM

    require(BaseModel, "_placement_is_delegated", "the ColBERT-XM fast path stays off for device_map placements")
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    mask = model[2]
    assert hasattr(mask, "_skiplist_ids"), (
        "MultiVectorMask._skiplist_ids is gone: ColBERT-XM's fast document head reads the skiplist from it. "
        "Update xm_integrations/compat/sentence_transformers.py.")
    assert set(mask._skiplist_ids.tolist()) >= {model.tokenizer.pad_token_id}


def test_sentence_transformers_multi_vector_inference_step() -> None:
    from sentence_transformers import MultiVectorEncoder

    require(MultiVectorEncoder, "_inference", "ColBERTXM's pool workers take the fast path through this step",
            ("inputs", "prompt", "batch_size", "show_progress_bar", "output_value", "save_to_cpu",
             "normalize_embeddings", "token_pooling", "task", "device"))


def test_sentence_transformers_merged_document_forward() -> None:
    from sentence_transformers.base.losses import merged_forward

    require(merged_forward, "embed_columns_padded", "ColBERTXMLoss embeds its document columns in one forward pass",
            ("model", "features_list", "mini_batch_size", "task_default"))


def test_sentence_transformers_model_card_logger() -> None:
    import logging

    import sentence_transformers.base.model_card as model_card

    assert model_card.logger is logging.getLogger("sentence_transformers.base.model_card"), (
        "the model card logs under another name: the save-time snippet filter in compat/log_filters.py misses it")


# -- transformers -----------------------------------------------------------------------------------------------------


def test_transformers_xmod_internals(tiny_mono_xm: Path) -> None:
    from transformers import XmodForSequenceClassification
    from transformers.models.xmod import modeling_xmod

    from xm_integrations.compat import transformers as compat

    require(modeling_xmod.XmodOutput, compat.ADAPTER_ATTRIBUTE, "the adapter dispatch replaces it per instance",
            ("lang_ids", "hidden_states"))
    model = XmodForSequenceClassification.from_pretrained(tiny_mono_xm)
    outputs = list(compat.xmod_output_modules(model))
    assert len(outputs) == model.config.num_hidden_layers, "XmodOutput no longer has adapter_modules/ln_before_adapter"
    assert compat.attention_implementation(model.config) in ("sdpa", "eager"), (
        "config._attn_implementation is gone: the SDPA mask shortcut and compile() read it")


def test_transformers_output_collector() -> None:
    from transformers.utils import output_capturing

    collector = require(output_capturing, "_active_collector",
                        "compiled layers must step aside while transformers records per-layer outputs")
    assert hasattr(collector, "get")


# -- tokenizers -------------------------------------------------------------------------------------------------------


def test_tokenizers_word_cache() -> None:
    from tokenizers import Tokenizer

    from xm_integrations.compat.tokenizers import disable_word_cache
    from xm_integrations.testing import build_tiny_tokenizer

    private = Tokenizer.from_str(build_tiny_tokenizer().backend_tokenizer.to_str())
    assert type(private.model).__name__ == "Unigram"
    require(private.model, "_resize_cache", "the tokenizer copy switches off the lock-bound word cache")
    assert disable_word_cache(private)


# -- FlagEmbedding (public but undocumented) --------------------------------------------------------------------------


def test_flagembedding_reranker_surface() -> None:
    pytest.importorskip("FlagEmbedding")
    import importlib

    from FlagEmbedding.inference.reranker.encoder_only.base import BaseReranker

    from xm_integrations.integrations.flagembedding.registration import MAPPING_MODULE

    mapping = importlib.import_module(MAPPING_MODULE)
    require(mapping, "AUTO_RERANKER_MAPPING", "FlagAutoReranker finds XMFlagReranker there")
    require(mapping, "RerankerConfig", "XMFlagReranker is registered as a RerankerConfig")
    require(BaseReranker, "compute_score_single_gpu", "XMFlagReranker overrides it (pool workers call it)",
            ("sentence_pairs", "batch_size", "query_max_length", "max_length", "normalize", "device"))
    for name in ("get_detailed_inputs", "start_multi_process_pool", "encode_multi_process", "stop_self_pool"):
        require(BaseReranker, name, "XMFlagReranker calls or overrides it")
