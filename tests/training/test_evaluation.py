"""language_evaluators: one stock evaluator per language folder, each language through its own adapter.

Reference: the same stock evaluator on plain strings, run on a second copy of the model whose
default language is set to the dataset's language (no routing involved).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorInformationRetrievalEvaluator

from xm_integrations import ColBERTXM, MonoXM
from xm_integrations.evaluation.datasets import load_candidates, load_datasets
from xm_integrations.testing.datasets import write_sample_datasets
from xm_integrations.training import language_evaluators
from xm_integrations.training.evaluation import MAX_RERANK_DOCUMENTS


def _reference(model_class, path: Path, dataset, evaluator_class, language: str | None = None) -> dict[str, float]:
    model = model_class(str(path), language=language or dataset.language)
    relevant = {q: {d for d, g in judged.items() if g > 0} for q, judged in dataset.qrels.items()}
    if evaluator_class is MultiVectorInformationRetrievalEvaluator:
        evaluator = evaluator_class(dict(dataset.queries), dict(dataset.corpus), relevant, name=dataset.name)
    else:
        samples = [{"query": dataset.queries[q], "positive": [dataset.corpus[d] for d in docs],
                    "negative": [t for d, t in dataset.corpus.items() if d not in docs]} for q, docs in relevant.items()]
        evaluator = evaluator_class(samples, name=dataset.name)
    return evaluator(model)


@pytest.mark.parametrize("kind", ["colbert", "mono"])
def test_per_language_metrics_equal_a_model_set_to_that_language(kind: str, tmp_path: Path, tiny_colbert_xm: Path,
                                                                  tiny_mono_xm: Path) -> None:
    root = write_sample_datasets(tmp_path / "data")
    path, model_class = (tiny_colbert_xm, ColBERTXM) if kind == "colbert" else (tiny_mono_xm, MonoXM)
    evaluator_class = MultiVectorInformationRetrievalEvaluator if kind == "colbert" else CrossEncoderRerankingEvaluator
    model = model_class(str(path), language="en")
    results = language_evaluators(model, root)(model)
    for dataset in load_datasets(root):
        expected = _reference(model_class, path, dataset, evaluator_class)
        ours = {key: value for key, value in results.items() if key.startswith(f"{dataset.name}_")}
        assert ours and ours == pytest.approx(expected, abs=1e-9)
    wrong = [_reference(model_class, path, dataset, evaluator_class, language="en") for dataset in load_datasets(root)]
    assert any(ref != {k: v for k, v in results.items() if k.startswith(f"{d.name}_")}
               for ref, d in zip(wrong, load_datasets(root)))  # the adapter matters on this data
    assert model.default_language == "en_XX"


def test_evaluation_during_training_logs_each_language(tmp_path: Path, tiny_colbert_xm: Path) -> None:
    from datasets import Dataset
    from sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainingArguments

    from xm_integrations.training import ColBERTXMLoss, ColBERTXMTrainer

    root = write_sample_datasets(tmp_path / "data")
    model = ColBERTXM(str(tiny_colbert_xm), language="en")
    data = Dataset.from_dict({"query": ["what is tea", "when was the tower built"],
                              "positive": ["tea is a drink", "the tower was built in 1889"],
                              "negative": ["the sea", "the river"]})
    args = MultiVectorEncoderTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, eval_strategy="steps",
                                               eval_steps=1, per_device_train_batch_size=2, report_to=[],
                                               use_cpu=True, save_strategy="no")
    trainer = ColBERTXMTrainer(model=model, args=args, train_dataset=data, loss=ColBERTXMLoss(model),
                               evaluator=language_evaluators(model, root))
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"eval_fr_maxsim_ndcg@10", "eval_de_maxsim_ndcg@10"} <= logged, sorted(logged)


def test_rerank_candidates_and_limits(tmp_path: Path, tiny_mono_xm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_sample_datasets(tmp_path / "data")
    model = MonoXM(str(tiny_mono_xm), language="en")
    candidates = {name: load_candidates(root / name / "bm25.trec") for name in ("de", "fr")}
    evaluator = language_evaluators(model, root, candidates=candidates)
    samples = evaluator.evaluators[0].samples
    assert all("documents" in sample for sample in samples)
    assert {doc.lang_id for sample in samples for doc in sample["documents"]} == {model.languages.index("de_DE")}
    monkeypatch.setattr("xm_integrations.training.evaluation.MAX_RERANK_DOCUMENTS", 2)
    with pytest.raises(ValueError, match="candidates="):
        language_evaluators(model, root)
    assert MAX_RERANK_DOCUMENTS == 1000
    with pytest.raises(TypeError, match="ColBERTXM .* or a MonoXM"):
        language_evaluators(object(), root)
