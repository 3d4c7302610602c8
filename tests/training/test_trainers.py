"""MonoXMTrainer / ColBERTXMTrainer through the real stock trainers, on CPU, with the tiny checkpoints.

Languages are observed where XMOD receives them (a forward pre-hook on its encoder, which gets
``lang_ids``), each batch row matched back to its dataset row by its token ids: the expected adapter
comes from the dataset's language column resolved independently, not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import CrossEncoder, MultiVectorEncoder
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder import losses as ce_losses
from sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainingArguments
from sentence_transformers.multi_vector_encoder import losses as mv_losses

from tests.training.conftest import EXPECTED_CODES, NEGATIVES, ROWS
from xm_integrations import ColBERTXM, MissingLanguageError, MonoXM, UnknownLanguageError
from xm_integrations.training import ColBERTXMLoss, ColBERTXMTrainer, MonoXMTrainer


def _args(cls, tmp_path: Path, **overrides):
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=len(ROWS), max_steps=2,
                   report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", seed=0,
                   dataloader_drop_last=False)
    options.update(overrides)
    return cls(**options)


def _pairs(with_labels: bool = True) -> Dataset:
    columns = {"query": [r["query"] for r in ROWS], "passage": [r["passage"] for r in ROWS]}
    if with_labels:
        columns["label"] = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    columns["language"] = [r["language"] for r in ROWS]
    return Dataset.from_dict(columns)


def _triples(extra: dict | None = None) -> Dataset:
    columns = {"query": [r["query"] for r in ROWS], "positive": [r["passage"] for r in ROWS], "negative": NEGATIVES}
    columns.update(extra or {})
    columns["language"] = [r["language"] for r in ROWS]
    return Dataset.from_dict(columns)


class LanguageProbe:
    """Records, per XMOD forward, each row's lang_id and the dataset row it holds."""

    def __init__(self, model, encoder: torch.nn.Module) -> None:
        self.tokenizer = model.tokenizer
        self.languages = list(model.languages)
        self.seen: list[tuple[int, int]] = []  # (lang_id, expected lang_id)
        texts = [(r["passage"], i) for i, r in enumerate(ROWS)] + [(t, i) for i, t in enumerate(NEGATIVES)]
        texts += [(r["query"], i) for i, r in enumerate(ROWS)]  # passages first: a pair's adapter is its passage's
        self.lookup = [(self.tokenizer(text, add_special_tokens=False)["input_ids"], row) for text, row in texts]
        encoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _row_of(self, ids: list[int]) -> int:
        for pieces, row in self.lookup:
            if any(ids[start:start + len(pieces)] == pieces for start in range(len(ids) - len(pieces) + 1)):
                return row
        raise AssertionError(f"no dataset text in {self.tokenizer.decode(ids)!r}")

    def _hook(self, module, args, kwargs) -> None:
        lang_ids = kwargs.get("lang_ids")
        assert lang_ids is not None, "XMOD ran without per-example lang_ids"
        for lang_id, row in zip(lang_ids.tolist(), self.rows_of_batch):
            self.seen.append((int(lang_id), self.languages.index(EXPECTED_CODES[row])))

    def attach_rows(self, embeddings_module: torch.nn.Module) -> None:
        def capture(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            self.rows_of_batch = [self._row_of([i for i in row.tolist()]) for row in input_ids]
        embeddings_module.register_forward_pre_hook(capture, with_kwargs=True)


def _probe(model) -> LanguageProbe:
    xmod = model[0].auto_model
    backbone = getattr(xmod, "roberta", xmod)
    probe = LanguageProbe(model, backbone.encoder)
    probe.attach_rows(backbone.embeddings)
    return probe


MONO_LOSSES = {
    "bce": (lambda m: ce_losses.BinaryCrossEntropyLoss(m), lambda: _pairs()),
    "mnrl": (lambda m: ce_losses.MultipleNegativesRankingLoss(m, num_negatives=2), lambda: _pairs(with_labels=False)),
    "listnet": (lambda m: ce_losses.ListNetLoss(m), lambda: Dataset.from_dict({
        "query": [r["query"] for r in ROWS], "docs": [[r["passage"], NEGATIVES[i]] for i, r in enumerate(ROWS)],
        "labels": [[1.0, 0.0]] * len(ROWS), "language": [r["language"] for r in ROWS]})),
}


@pytest.mark.parametrize("loss_name", sorted(MONO_LOSSES))
def test_mono_xm_languages_reach_xmod_per_example(mono, tmp_path: Path, loss_name: str) -> None:
    make_loss, make_data = MONO_LOSSES[loss_name]
    probe = _probe(mono)
    trainer = MonoXMTrainer(model=mono, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=make_data(),
                            loss=make_loss(mono), training_language="en")
    trainer.train()
    assert len(probe.seen) >= 2 * len(ROWS)
    assert [got for got, _ in probe.seen] == [expected for _, expected in probe.seen]
    assert len({got for got, _ in probe.seen}) == 5  # en, fr, de, es, pt
    assert mono.default_language == "en_XX"  # training never changes the default


MV_LOSSES = {
    "mnrl": (lambda m: mv_losses.MultiVectorMultipleNegativesRankingLoss(m), {}),
    "cached_mnrl": (lambda m: mv_losses.CachedMultiVectorMultipleNegativesRankingLoss(m, mini_batch_size=2), {}),
    "distill_kl": (lambda m: mv_losses.MultiVectorDistillKLDivLoss(m), {"scores": [[3.0, 1.0]] * len(ROWS)}),
    "margin_mse": (lambda m: mv_losses.MultiVectorMarginMSELoss(m), {"label": [2.0] * len(ROWS)}),
    "colbert_ai": (lambda m: ColBERTXMLoss(m), {}),
}


@pytest.mark.parametrize("loss_name", sorted(MV_LOSSES))
def test_colbert_xm_languages_reach_xmod_per_example(colbert, tmp_path: Path, loss_name: str) -> None:
    make_loss, extra = MV_LOSSES[loss_name]
    probe = _probe(colbert)
    trainer = ColBERTXMTrainer(model=colbert, args=_args(MultiVectorEncoderTrainingArguments, tmp_path),
                               train_dataset=_triples(extra), loss=make_loss(colbert))
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    assert len(probe.seen) >= 2 * 3 * len(ROWS)  # 2 steps, query + 2 document columns
    assert [got for got, _ in probe.seen] == [expected for _, expected in probe.seen]
    assert colbert.default_language == "en_XX"


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("kind", ["mono", "colbert"])
def test_frozen_unchanged_trainable_changed_and_loss_falls(request, tmp_path: Path, kind: str) -> None:
    model = request.getfixturevalue(kind)
    before = _snapshot(model)
    if kind == "mono":
        args = _args(CrossEncoderTrainingArguments, tmp_path, max_steps=20, learning_rate=5e-3, warmup_steps=0)
        trainer = MonoXMTrainer(model=model, args=args, train_dataset=_pairs())
    else:
        args = _args(MultiVectorEncoderTrainingArguments, tmp_path, max_steps=20, learning_rate=5e-3, warmup_steps=0)
        trainer = ColBERTXMTrainer(model=model, args=args, train_dataset=_triples(), loss=ColBERTXMLoss(model))
    trainer.train()
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    assert any("embeddings" in name for name in frozen) and any("adapter_modules" in name for name in frozen)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert id(parameter) not in optimized, name
            assert torch.equal(parameter, before[name]), f"{name} changed although frozen"
    changed = [name for name, parameter in model.named_parameters()
               if name not in frozen and not torch.equal(parameter, before[name])]
    assert changed and all("adapter_modules" not in name for name in changed)
    assert any("attention" in name for name in changed)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 20
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("kind", ["mono", "colbert"])
def test_bf16_training_runs(request, tmp_path: Path, kind: str) -> None:
    model = request.getfixturevalue(kind)
    if kind == "mono":
        trainer = MonoXMTrainer(model=model, args=_args(CrossEncoderTrainingArguments, tmp_path, bf16=True),
                                train_dataset=_pairs())
    else:
        trainer = ColBERTXMTrainer(model=model, args=_args(MultiVectorEncoderTrainingArguments, tmp_path, bf16=True),
                                   train_dataset=_triples(), loss=ColBERTXMLoss(model))
    assert np.isfinite(trainer.train().training_loss)


def test_stock_cross_encoder_cannot_train_xmod_in_bf16(tiny_mono_xm: Path, tmp_path: Path) -> None:
    """Why MonoXMTrainer exists: transformers' adapter dispatch index-puts bf16 into a float32 buffer."""
    stock = CrossEncoder(str(tiny_mono_xm), config_kwargs={"default_language": "en_XX"})
    trainer = CrossEncoderTrainer(model=stock, args=_args(CrossEncoderTrainingArguments, tmp_path, bf16=True),
                                  train_dataset=_pairs().remove_columns("language"))
    with pytest.raises(RuntimeError, match="dtypes match"):
        trainer.train()


def test_saved_mono_xm_reloads_in_ours_and_stock(mono, tmp_path: Path) -> None:
    MonoXMTrainer(model=mono, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=_pairs()).train()
    mono.save(str(tmp_path / "saved"))
    pairs = [(r["query"], r["passage"]) for r in ROWS]
    expected = mono.predict(pairs)
    ours = MonoXM(str(tmp_path / "saved")).predict(pairs)
    stock = CrossEncoder(str(tmp_path / "saved")).predict(pairs)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stock, expected, rtol=1e-5, atol=1e-6)


def test_saved_colbert_xm_reloads_in_ours_and_stock(colbert, tmp_path: Path) -> None:
    ColBERTXMTrainer(model=colbert, args=_args(MultiVectorEncoderTrainingArguments, tmp_path),
                     train_dataset=_triples(), loss=ColBERTXMLoss(colbert)).train()
    colbert.save(str(tmp_path / "saved"))
    queries, documents = [r["query"] for r in ROWS], [r["passage"] for r in ROWS]
    ours = ColBERTXM(str(tmp_path / "saved"))
    stock = MultiVectorEncoder(str(tmp_path / "saved"))
    for method in ("encode_query", "encode_document"):
        texts = queries if method == "encode_query" else documents
        expected = getattr(colbert, method)(texts)
        for loaded in (ours, stock):
            for got, want in zip(getattr(loaded, method)(texts), expected):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_language_names_the_dataset_row(mono, tmp_path: Path) -> None:
    data = _pairs().map(lambda row, i: {"language": "klingon" if i == 3 else row["language"]}, with_indices=True)
    with pytest.raises(UnknownLanguageError, match="row 3 of the dataset"):
        MonoXMTrainer(model=mono, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=data)


def test_rows_without_language_need_a_training_language(tiny_mono_xm: Path, tmp_path: Path) -> None:
    model = MonoXM(str(tiny_mono_xm))  # no default language, like the published checkpoint
    trainer = MonoXMTrainer(model=model, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=_pairs())
    with pytest.raises(MissingLanguageError, match="training_language"):
        trainer.train()
    with pytest.raises(UnknownLanguageError):
        MonoXMTrainer(model=model, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=_pairs(),
                      training_language="klingon")
    assert model.default_language is None


def test_freeze_off_trains_everything(mono, tmp_path: Path) -> None:
    trainer = MonoXMTrainer(model=mono, args=_args(CrossEncoderTrainingArguments, tmp_path), train_dataset=_pairs(),
                            freeze=False)
    assert trainer.freeze_summary is None
    assert all(parameter.requires_grad for parameter in mono.parameters())
