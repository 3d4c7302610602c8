"""Our metrics against trec_eval (through ir-measures' pytrec_eval provider), on made data with ties and gaps."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.paths import REPO_ROOT
from xm_integrations.evaluation import (
    METRICS,
    DatasetFormatError,
    evaluate_run,
    load_candidates,
    load_datasets,
    rank_documents,
    rerank,
    results_document,
)
from xm_integrations.testing.datasets import write_beir, write_sample_datasets

ir_measures = pytest.importorskip("ir_measures")
REFERENCE = ir_measures.providers.registry["pytrec_eval"]
# trec_eval's recip_rank has no cutoff, and ir-measures 0.4.3's pytrec_eval provider gets RR@10 wrong (0.0 for a
# first relevant document at rank 4), so MRR@10 is taken from the full reciprocal rank: a first relevant document
# below rank 10 gives 1/rank < 0.1. The msmarco provider's RR@10 cross-checks it on runs without ties (below).
REFERENCE_MEASURES = {
    "mrr@10": ir_measures.RR,
    "ndcg@10": ir_measures.nDCG @ 10,
    "recall@100": ir_measures.R @ 100,
    "recall@1000": ir_measures.R @ 1000,
}


def reference_per_query(run, qrels) -> dict[str, dict[str, float]]:
    by_measure = {measure: name for name, measure in REFERENCE_MEASURES.items()}
    values: dict[str, dict[str, float]] = {}
    for metric in REFERENCE.iter_calc(list(REFERENCE_MEASURES.values()), qrels, run):
        value = metric.value
        if metric.measure == ir_measures.RR and value < 1 / 10 - 1e-12:
            value = 0.0
        values.setdefault(metric.query_id, {})[by_measure[metric.measure]] = value
    return values


def reference_mean(run, qrels) -> dict[str, float]:
    """The mean over every judged query, as trec_eval -c (and ir-measures' calc_aggregate) averages."""
    per_query = reference_per_query(run, qrels)
    assert set(per_query) == set(qrels)
    return {name: sum(values[name] for values in per_query.values()) / len(per_query) for name in REFERENCE_MEASURES}


def made_collection() -> tuple[dict, dict]:
    """Ties, unjudged documents, graded judgements, a deep relevant document, and queries on one side only."""
    qrels = {
        # Ties at the top: trec_eval orders equal scores by decreasing doc id, so "d9" comes before "d10"
        # (string order), and the relevant "a" comes last of its tie group.
        "q-ties": {"a": 1, "b": 0, "c": 2, "d10": 1},
        # Graded judgements and a judged-non-relevant document ranked first.
        "q-graded": {"x": 0, "y": 2, "z": 1, "w": 3},
        # Relevant documents at ranks 50, 150, 900 and 1100: recall@100 and @1000 differ.
        "q-deep": {f"doc{i:05d}": 1 for i in (49, 149, 899, 1099)},
        # Judged, but absent from the run: scores 0 and still counts in the mean.
        "q-missing": {"m": 1},
        # Only non-relevant judgements: every metric is 0 (trec_eval -c).
        "q-no-relevant": {"n1": 0, "n2": 0},
        # Non-ASCII document ids in a tie: the order is by code point, as strcmp on UTF-8 bytes.
        "q-unicode": {"é": 1, "e": 0, "z": 0},
    }
    run = {
        "q-ties": {"a": 1.0, "b": 1.0, "z-unjudged": 1.0, "c": 0.5, "d9": 0.25, "d10": 0.25, "u": 0.25},
        "q-graded": {"x": 3.0, "u1": 2.0, "z": 1.5, "y": 1.0, "u2": 0.5},
        "q-deep": {f"doc{i:05d}": -float(i) for i in range(1500)},
        "q-no-relevant": {"n1": 2.0, "n2": 1.0, "other": 0.5},
        "q-unicode": {"é": 0.5, "e": 0.5, "z": 0.5},
        # Run-only query: ignored.
        "q-unjudged": {"a": 1.0},
    }
    return run, qrels


def test_metrics_equal_trec_eval_on_made_collection() -> None:
    run, qrels = made_collection()
    ours = evaluate_run(run, qrels)
    reference = reference_per_query(run, qrels)

    assert set(ours.per_query) == set(reference) == set(qrels)
    for query_id, values in reference.items():
        for metric, value in values.items():
            assert ours.per_query[query_id][metric] == pytest.approx(value, abs=1e-12), (query_id, metric)
    for metric, value in reference_mean(run, qrels).items():
        assert ours.mean[metric] == pytest.approx(value, abs=1e-12), metric
    assert ours.num_queries == len(qrels)
    assert ours.num_queries_missing_from_run == 1
    assert ours.num_queries_without_relevant == 1


def test_made_collection_exercises_what_it_claims() -> None:
    """Guards the fixture: without these properties the comparison above would prove less."""
    run, qrels = made_collection()
    reference = reference_per_query(run, qrels)
    # Tie-breaking matters: "a" is relevant and tied at the top but ranked third by trec_eval.
    assert reference["q-ties"]["mrr@10"] == pytest.approx(1 / 3)
    assert reference["q-deep"]["mrr@10"] == 0.0  # first relevant at rank 50
    assert reference["q-deep"]["recall@100"] == pytest.approx(0.25)
    assert reference["q-deep"]["recall@1000"] == pytest.approx(0.75)
    assert reference["q-missing"] == {metric: 0.0 for metric in METRICS}
    assert reference["q-unicode"]["mrr@10"] == pytest.approx(1.0)  # "é" > "z" > "e" by code point


@pytest.mark.parametrize("seed", range(20))
def test_metrics_equal_trec_eval_on_random_runs_with_many_ties(seed: int) -> None:
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(8):
        docs = [f"d{rng.randrange(400)}" for _ in range(rng.randrange(1, 300))]
        qrels[f"q{q}"] = {doc: rng.choice([0, 0, 1, 1, 2, 3]) for doc in rng.sample(docs, min(len(docs), 12))}
        if rng.random() < 0.85:  # some judged queries are missing from the run
            # Scores on a coarse grid: many ties, broken by document id.
            run[f"q{q}"] = {doc: rng.randrange(6) / 2 for doc in docs}
    run["q-extra"] = {"d1": 1.0}
    ours = evaluate_run(run, qrels)
    for query_id, values in reference_per_query(run, qrels).items():
        for metric, value in values.items():
            assert ours.per_query[query_id][metric] == pytest.approx(value, abs=1e-12), (seed, query_id, metric)
    for metric, value in reference_mean(run, qrels).items():
        assert ours.mean[metric] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_mrr_at_10_equals_the_ms_marco_implementation_without_ties(seed: int) -> None:
    """A second, independent MRR@10 (ir-measures' msmarco provider, which applies the cutoff itself).

    Its tie order differs from trec_eval's, so the scores here are all distinct."""
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(30):
        docs = [f"d{i}" for i in rng.sample(range(500), rng.randrange(1, 40))]
        qrels[f"q{q}"] = {doc: rng.choice([0, 1, 2]) for doc in rng.sample(docs, min(len(docs), 5))}
        qrels[f"q{q}"][f"unretrieved{q}"] = 1
        scores = rng.sample(range(10_000), len(docs))
        run[f"q{q}"] = {doc: float(score) for doc, score in zip(docs, scores)}
    msmarco = ir_measures.providers.registry["msmarco"]
    expected = {m.query_id: m.value for m in msmarco.iter_calc([ir_measures.RR @ 10], qrels, run)}
    ours = evaluate_run(run, qrels, metrics=["mrr@10"]).per_query
    assert any(0 < value < 1 for value in expected.values()) and any(value == 0 for value in expected.values())
    for query_id, value in expected.items():
        assert ours[query_id]["mrr@10"] == pytest.approx(value, abs=1e-12), query_id


def test_rank_documents_breaks_ties_by_decreasing_id() -> None:
    assert rank_documents({"a": 1.0, "c": 1.0, "b": 2.0, "d": 0.0}) == ["b", "c", "a", "d"]


def test_unknown_metric_and_empty_qrels_are_explained() -> None:
    with pytest.raises(ValueError, match="NAME@K"):
        evaluate_run({}, {"q": {"d": 1}}, metrics=["map@10"])
    with pytest.raises(ValueError, match="no judged query"):
        evaluate_run({"q": {"d": 1.0}}, {})


# ----------------------------------------------------------------------------------------------
# Dataset layouts
# ----------------------------------------------------------------------------------------------


def test_reads_beir_layout_per_language_folders(tmp_path: Path) -> None:
    write_beir(tmp_path / "fr", {"d1": ("Titre", "La tour Eiffel."), "d2": ("", "Le thé vert.")},
               {"q1": "Quand la tour Eiffel ?", "q2": "non jugée"}, [("q1", "d1", 1), ("q1", "d2", 0)])
    write_beir(tmp_path / "de", {"d1": ("", "Der Eiffelturm.")}, {"q9": "Eiffelturm?"}, [("q9", "d1", 2)])

    datasets = load_datasets(tmp_path)

    assert [d.language for d in datasets] == ["de", "fr"]
    fr = datasets[1]
    assert fr.corpus == {"d1": "Titre La tour Eiffel.", "d2": "Le thé vert."}
    assert fr.queries == {"q1": "Quand la tour Eiffel ?"}  # only judged queries are kept
    assert fr.qrels == {"q1": {"d1": 1, "d2": 0}}
    assert datasets[0].qrels == {"q9": {"d1": 2}}


def test_reads_ir_datasets_export_layout(tmp_path: Path) -> None:
    (tmp_path / "docs.tsv").write_text("doc_id\ttext\nD1\tpremier document\nD2\tsecond\n", encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"query_id": "1", "text": "premier ?"}\n', encoding="utf-8")
    (tmp_path / "qrels").write_text("1 0 D1 1\n1 0 D2 0\n", encoding="utf-8")

    (dataset,) = load_datasets(tmp_path)

    assert dataset.layout == "ir_datasets"
    assert dataset.language is None
    assert dataset.corpus == {"D1": "premier document", "D2": "second"}
    assert dataset.queries == {"1": "premier ?"}
    assert dataset.qrels == {"1": {"D1": 1, "D2": 0}}


def test_layout_errors_name_the_expected_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetFormatError, match="corpus.jsonl, queries.jsonl, qrels/test.tsv"):
        load_datasets(tmp_path)
    write_beir(tmp_path / "x", {"d": ("", "t")}, {"q": "t"}, [("q-other", "d", 1)])
    with pytest.raises(DatasetFormatError, match="not in queries.jsonl"):
        load_datasets(tmp_path / "x")


def test_candidates_keep_trec_rank_order(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 b 2 0.5 bm25\nq1 Q0 a 1 0.9 bm25\nq2 Q0 c 1 1.0 bm25\nq1 Q0 a 1 0.9 bm25\n")
    assert load_candidates(path) == {"q1": ["a", "b"], "q2": ["c"]}
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("q1\tz\nq1\ty\n")
    assert load_candidates(pairs) == {"q1": ["z", "y"]}


# ----------------------------------------------------------------------------------------------
# Reranking with Mono-XM, end to end
# ----------------------------------------------------------------------------------------------


def test_rerank_with_mono_xm_matches_stock_cross_encoder_scores(tmp_path: Path, tiny_mono_xm: Path) -> None:
    """The run holds, for each (query, candidate), the score a stock CrossEncoder gives with that adapter."""
    from sentence_transformers import CrossEncoder

    from xm_integrations import MonoXM

    write_beir(tmp_path / "fr", {"d1": ("", "La tour Eiffel a été construite à Paris."), "d2": ("", "Le thé vert.")},
               {"q1": "Quand la tour Eiffel a-t-elle été construite ?"}, [("q1", "d1", 1)])
    (dataset,) = load_datasets(tmp_path)
    run = rerank(MonoXM(str(tiny_mono_xm)), dataset, {"q1": ["d1", "d2"]}, show_progress_bar=False)

    stock = CrossEncoder(str(tiny_mono_xm), config_kwargs={"default_language": "fr_XX"})
    expected = stock.predict([(dataset.queries["q1"], dataset.corpus[d]) for d in ("d1", "d2")])
    assert run["q1"]["d1"] == pytest.approx(float(expected[0]), abs=1e-5)
    assert run["q1"]["d2"] == pytest.approx(float(expected[1]), abs=1e-5)


def test_results_document_averages_languages_equally() -> None:
    run, qrels = made_collection()
    small = evaluate_run({"q": {"d": 1.0}}, {"q": {"d": 1}})
    big = evaluate_run(run, qrels)
    document = results_document({"fr": small, "de": big}, model="m", task="reranking", dataset_name="made")
    for metric in METRICS:
        assert document["average"][metric] == pytest.approx((small.mean[metric] + big.mean[metric]) / 2)
    assert document["per_language"]["de"]["num_queries"] == len(qrels)


# ----------------------------------------------------------------------------------------------
# Full ranking with ColBERT-XM, and the command line end to end
# ----------------------------------------------------------------------------------------------


def numpy_maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """ColBERT's score, written out: for each query token the best dot product over document tokens, summed."""
    return float((query @ document.T).max(axis=1).sum())


def test_retrieve_keeps_the_top_k_maxsim_documents_across_chunks(tiny_colbert_xm: Path) -> None:
    from xm_integrations import ColBERTXM
    from xm_integrations.evaluation import RetrievalDataset, retrieve
    from xm_integrations.testing.corpus import SAMPLE_PASSAGES

    passages = SAMPLE_PASSAGES["fr_XX"] + SAMPLE_PASSAGES["de_DE"]
    dataset = RetrievalDataset(name="fr", path=Path("."), corpus={f"d{i}": p for i, p in enumerate(passages)},
                               queries={"q1": "Combien de caféine dans le thé vert ?", "q2": "La tour Eiffel"},
                               qrels={"q1": {"d3": 1}, "q2": {"d0": 1}}, language="fr")
    model = ColBERTXM(str(tiny_colbert_xm))

    run = retrieve(model, dataset, top_k=3, chunk_size=2, show_progress_bar=False)  # 8 documents in 4 chunks

    documents = [d.cpu().numpy() for d in model.encode_document(passages, language="fr_XX", show_progress_bar=False)]
    for query_id, text in dataset.queries.items():
        query = model.encode_query([text], language="fr_XX", show_progress_bar=False)[0].cpu().numpy()
        expected = sorted(((numpy_maxsim(query, doc), f"d{i}") for i, doc in enumerate(documents)), reverse=True)[:3]
        assert set(run[query_id]) == {doc_id for _, doc_id in expected}
        for score, doc_id in expected:
            assert run[query_id][doc_id] == pytest.approx(score, abs=1e-4)


def reference_from_files(run_file: Path, qrels_file: Path) -> dict[str, float]:
    """Mean metrics computed by trec_eval from the files alone (ir-measures' TREC run reader, qrels read here)."""
    run: dict = {}
    for scored in ir_measures.read_trec_run(str(run_file)):
        run.setdefault(scored.query_id, {})[scored.doc_id] = scored.score
    qrels: dict = {}
    for line in qrels_file.read_text().splitlines()[1:]:
        query_id, doc_id, grade = line.split("\t")
        qrels.setdefault(query_id, {})[doc_id] = int(grade)
    return reference_mean(run, qrels)


@pytest.mark.parametrize("kind", ["retrieval", "reranking"])
def test_evaluate_command_matches_trec_eval_on_its_own_runs(kind: str, tmp_path: Path, tiny_colbert_xm: Path,
                                                            tiny_mono_xm: Path) -> None:
    from xm_integrations.cli import main

    dataset = write_sample_datasets(tmp_path / "data")
    output, runs = tmp_path / "results.json", tmp_path / "runs"
    model = tiny_colbert_xm if kind == "retrieval" else tiny_mono_xm
    extra = ["--candidates", "bm25.trec"] if kind == "reranking" else []
    assert main(["evaluate", str(model), str(dataset), "--output", str(output), "--save-runs", str(runs),
                 "--dataset-name", "sample", "--no-progress", *extra]) == 0

    document = json.loads(output.read_text())
    assert document["task"] == kind and sorted(document["per_language"]) == ["de", "fr"]
    for language in ("de", "fr"):
        reference = reference_from_files(runs / f"{language}.trec", dataset / language / "qrels" / "test.tsv")
        for metric in METRICS:
            assert document["per_language"][language][metric] == pytest.approx(reference[metric], abs=1e-9)
    for metric in METRICS:
        expected = (document["per_language"]["de"][metric] + document["per_language"]["fr"][metric]) / 2
        assert document["average"][metric] == pytest.approx(expected)


def test_evaluate_then_push_puts_the_numbers_in_the_card(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from xm_integrations.cli import main
    from xm_integrations.hub.convert import convert_model
    from xm_integrations.testing import build_tiny_mono_xm

    source = build_tiny_mono_xm(tmp_path / "src", languages=("en_XX", "fr_XX", "de_DE"))
    dataset = write_sample_datasets(tmp_path / "data")
    results = tmp_path / "results.json"
    assert main(["evaluate", str(source), str(dataset), "--candidates", "bm25.trec", "--output", str(results),
                 "--dataset-name", "sample", "--dataset-id", "org/sample", "--no-progress"]) == 0
    published = convert_model(source, tmp_path / "mono-fr", language="fr").output_dir
    assert main(["push", str(published), "me/mono", "--dry-run", str(tmp_path / "preview"),
                 "--eval-results", str(results)]) == 0

    document = json.loads(results.read_text())
    entries = {(r.dataset_name, r.metric_type): r.metric_value
               for r in ModelCard.load(tmp_path / "preview" / "README.md").data.eval_results}
    assert entries[("sample (fr)", "ndcg_at_10")] == round(document["per_language"]["fr"]["ndcg@10"], 4)
    assert entries[("sample (average)", "recall_at_100")] == round(document["average"]["recall@100"], 4)
    assert len(entries) == 12


def reference_from_trec_files(run_file: Path, qrels_file: Path) -> dict[str, float]:
    """Mean metrics computed by trec_eval from a TREC run and TREC qrels, both read by ir-measures."""
    run: dict = {}
    for scored in ir_measures.read_trec_run(str(run_file)):
        run.setdefault(scored.query_id, {})[scored.doc_id] = scored.score
    qrels: dict = {}
    for judged in ir_measures.read_trec_qrels(str(qrels_file)):
        qrels.setdefault(judged.query_id, {})[judged.doc_id] = judged.relevance
    return reference_mean(run, qrels)


@pytest.mark.slow
def test_evaluate_script_on_ir_datasets_layout_matches_trec_eval(tmp_path: Path, tiny_colbert_xm: Path) -> None:
    """scripts/evaluate.py as users run it, in its own process, on an `ir_datasets export` folder (docs.jsonl,
    queries.tsv, TREC qrels with a non-relevant judgement, an unjudged query and a query absent from the queries'
    judgements), full ranking with ColBERT-XM; progress bars go to stderr."""
    import os
    import subprocess
    import sys

    from xm_integrations.testing.corpus import SAMPLE_PASSAGES

    data = tmp_path / "mini-fr"
    data.mkdir()
    passages = SAMPLE_PASSAGES["fr_XX"] + SAMPLE_PASSAGES["de_DE"]
    (data / "docs.jsonl").write_text("".join(json.dumps({"doc_id": f"D{i}", "text": text}, ensure_ascii=False) + "\n"
                                             for i, text in enumerate(passages)), encoding="utf-8")
    (data / "queries.tsv").write_text("1\tQuand la tour Eiffel a-t-elle été construite ?\n"
                                      "2\tCombien de caféine dans le thé vert ?\n3\tjamais jugée\n", encoding="utf-8")
    (data / "qrels").write_text("1 0 D0 1\n1 0 D1 0\n2 0 D3 2\n2 0 D6 1\n", encoding="utf-8")
    output, runs = tmp_path / "results.json", tmp_path / "runs"
    script = REPO_ROOT / "scripts" / "evaluate.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tiny_colbert_xm), str(data), "--language", "fr", "--top-k", "5",
         "--output", str(output), "--save-runs", str(runs), "--batch-size", "2"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    document = json.loads(output.read_text())
    assert document["task"] == "retrieval" and list(document["per_language"]) == ["mini-fr"]
    assert document["per_language"]["mini-fr"]["num_queries"] == 2  # the unjudged query is not evaluated
    reference = reference_from_trec_files(runs / "mini-fr.trec", data / "qrels")
    for metric in METRICS:
        assert document["per_language"]["mini-fr"][metric] == pytest.approx(reference[metric], abs=1e-9)
        assert document["average"][metric] == document["per_language"]["mini-fr"][metric]
    assert sum(1 for _ in (runs / "mini-fr.trec").open()) == 2 * 5  # top-k kept per query
    for bar in ("mini-fr: corpus", "Encoding documents: 100%", "Encoding queries: 100%"):  # progress bars
        assert bar in done.stderr, bar
