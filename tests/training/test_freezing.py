"""freeze_xmod: what it freezes, against transformers' own freeze_embeddings_and_language_adapters()."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import XmodForSequenceClassification

from xm_integrations import UnknownLanguageError, XMFlagReranker
from xm_integrations.training import freeze_xmod


def _frozen(module: torch.nn.Module) -> set[str]:
    return {name for name, parameter in module.named_parameters() if not parameter.requires_grad}


def test_mono_xm_freezes_what_transformers_freezes(mono, tiny_mono_xm: Path) -> None:
    reference = XmodForSequenceClassification.from_pretrained(str(tiny_mono_xm))
    reference.freeze_embeddings_and_language_adapters()  # works on the task model (it has .roberta)
    summary = freeze_xmod(mono)
    ours = {name.removeprefix("0.model.") for name in _frozen(mono)}
    assert ours == _frozen(reference)
    trainable = sum(p.numel() for p in mono.parameters() if p.requires_grad)
    assert (summary.trainable, summary.total) == (trainable, sum(p.numel() for p in mono.parameters()))
    assert 0 < summary.trainable < summary.total


def test_colbert_xm_bare_xmod_model_frozen_with_its_pooler(colbert) -> None:
    xmod = colbert[0].auto_model
    with pytest.raises(AttributeError, match="roberta"):
        xmod.freeze_embeddings_and_language_adapters()  # transformers#33672: why freeze_xmod exists
    freeze_xmod(colbert)
    frozen = _frozen(colbert)
    assert all(not p.requires_grad for p in xmod.embeddings.parameters())
    assert all(not p.requires_grad for p in xmod.pooler.parameters())
    for layer in xmod.encoder.layer:
        assert all(not p.requires_grad for p in layer.output.adapter_modules.parameters())
        assert all(p.requires_grad for p in layer.output.LayerNorm.parameters())  # reused by adapters, shared
        assert all(p.requires_grad for p in layer.attention.parameters())
    assert all(p.requires_grad for p in colbert[1].parameters())  # the ColBERT projection
    assert not any(name.startswith("1.") for name in frozen)


def test_trainable_languages_and_options(colbert) -> None:
    summary = freeze_xmod(colbert, trainable_languages=["fr", "German"], pooler=False)
    assert summary.trainable_languages == ("fr_XX", "de_DE")
    layer = colbert[0].auto_model.encoder.layer[0].output
    assert all(p.requires_grad for p in layer.adapter_modules["fr_XX"].parameters())
    assert all(p.requires_grad for p in layer.adapter_modules["de_DE"].parameters())
    assert not any(p.requires_grad for p in layer.adapter_modules["en_XX"].parameters())
    assert all(p.requires_grad for p in colbert[0].auto_model.pooler.parameters())
    with pytest.raises(UnknownLanguageError, match="klingon"):
        freeze_xmod(colbert, trainable_languages=["klingon"])


def test_adapter_layer_norm_is_frozen_where_the_config_has_one(tmp_path: Path) -> None:
    from transformers import XmodConfig, XmodModel

    config = XmodConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, languages=["en_XX", "fr_XX"], adapter_layer_norm=True)
    model = XmodModel(config)
    freeze_xmod(model)
    norm = model.encoder.layer[0].output.adapter_layer_norm
    assert norm is not None and not any(p.requires_grad for p in norm.parameters())


def test_flag_reranker_and_no_xmod(tiny_mono_xm: Path) -> None:
    reranker = XMFlagReranker(str(tiny_mono_xm), devices="cpu", use_fp16=False, language="en")
    summary = freeze_xmod(reranker)
    assert summary.trainable < summary.total
    assert not reranker.model.roberta.embeddings.word_embeddings.weight.requires_grad
    with pytest.raises(TypeError, match="no XMOD model"):
        freeze_xmod(torch.nn.Linear(2, 2))
