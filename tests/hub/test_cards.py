"""Model cards: metadata read back with huggingface_hub, every adapter's ISO code, and every snippet executed."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard, metadata_load

from tests.hub.hub_fixtures import colbert_xm_fr, mono_xm_fr, xmod_classifier, xmod_encoder  # noqa: F401
from tests.paths import REPO_ROOT
from xm_integrations.hub.cards import CardOptions, render_model_card
from xm_integrations.testing import TINY_LANGUAGES, build_tiny_mono_xm, populate_hub_cache

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def iso_prefixes(codes) -> list[str]:
    """ISO 639-1 codes the independent way: XMOD codes are ``<iso639-1>_<REGION>``."""
    return list(dict.fromkeys(code.split("_")[0] for code in codes))


def write_card(card: ModelCard, folder: Path) -> Path:
    path = folder / "README.md"
    path.write_text(str(card), encoding="utf-8")
    return path


@pytest.fixture(params=["mono_xm_fr", "colbert_xm_fr", "xmod_encoder", "xmod_classifier"])
def model_folder(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, request.getfixturevalue(request.param)


def test_card_metadata_parses_and_lists_every_adapter(model_folder: tuple[str, Path], tmp_path: Path) -> None:
    name, folder = model_folder
    options = CardOptions(license="apache-2.0") if name.startswith("xmod") else None
    path = write_card(render_model_card(folder, f"test-org/{name}", options), tmp_path)

    metadata = metadata_load(path)  # huggingface_hub's YAML reader
    card = ModelCard.load(path)
    expected_iso = iso_prefixes(TINY_LANGUAGES)
    assert metadata["language"] == expected_iso
    assert len(expected_iso) == 80  # 81 adapters, zh_CN and zh_TW share "zh"
    assert card.data.language == expected_iso
    assert metadata["license"] == ("apache-2.0" if name.startswith("xmod") else "mit")
    assert metadata["base_model"] == "facebook/xmod-base"
    assert metadata["library_name"] == ("transformers" if name.startswith("xmod") else "sentence-transformers")
    assert metadata["pipeline_tag"] == {"mono_xm_fr": "text-ranking", "colbert_xm_fr": "feature-extraction",
                                        "xmod_encoder": "feature-extraction",
                                        "xmod_classifier": "text-classification"}[name]
    assert metadata.get("datasets") == (None if name.startswith("xmod") else ["ms_marco"])
    assert "xmod" in metadata["tags"] and "multilingual" in metadata["tags"]
    if not name.startswith("xmod"):
        assert "sentence-transformers" in metadata["tags"]
    assert "model-index" not in metadata  # no evaluation results given
    # The body's table has a row per adapter.
    for code in TINY_LANGUAGES:
        assert f"| `{code}` |" in card.text, code


def test_card_options_set_the_metadata(mono_xm_fr: Path, tmp_path: Path) -> None:
    """--license, --base-model, --dataset and --tag reach the YAML front matter as given."""
    options = CardOptions(license="apache-2.0", base_model="antoinelouis/mono-xm", datasets=["unicamp-dl/mmarco"],
                          tags=["french", "xmod"])
    metadata = metadata_load(write_card(render_model_card(mono_xm_fr, "test-org/mono", options), tmp_path))
    assert metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == "antoinelouis/mono-xm"
    assert metadata["datasets"] == ["unicamp-dl/mmarco"]
    assert metadata["tags"].count("xmod") == 1 and "french" in metadata["tags"]


def test_card_languages_follow_the_checkpoint(tmp_path: Path) -> None:
    folder = build_tiny_mono_xm(tmp_path / "subset", languages=("fr_XX", "zh_CN", "zh_TW", "no_XX", "gsw_CH"),
                                default_language="zh_TW")
    card = render_model_card(folder, "test-org/subset")
    path = write_card(card, tmp_path)
    assert metadata_load(path)["language"] == ["fr", "zh", "no", "gsw"]
    assert card.text.count("\n| `") == 5  # table rows
    assert "`zh-Hant`" in card.text or "`zh-TW`" in card.text  # how the second Chinese adapter is written


def test_eval_results_become_model_index(mono_xm_fr: Path, tmp_path: Path) -> None:
    document = {  # written by hand, as `xm-integrations evaluate` documents it
        "format": "xm-integrations-eval/1", "model": "m", "task": "reranking",
        "dataset": {"name": "mMARCO", "id": "unicamp-dl/mmarco", "split": "dev"},
        "metrics": ["mrr@10", "ndcg@10", "recall@100", "recall@1000"],
        "per_language": {
            "fr": {"mrr@10": 0.31234, "ndcg@10": 0.4, "recall@100": 0.8, "recall@1000": 0.9, "num_queries": 3},
            "de": {"mrr@10": 0.2, "ndcg@10": 0.3, "recall@100": 0.7, "recall@1000": 0.95, "num_queries": 3},
        },
        "average": {"mrr@10": 0.25617, "ndcg@10": 0.35, "recall@100": 0.75, "recall@1000": 0.925, "num_languages": 2},
    }
    path = write_card(render_model_card(mono_xm_fr, "test-org/mono", CardOptions(eval_results=[document])), tmp_path)

    model_index = metadata_load(path)["model-index"]
    assert model_index[0]["name"] == "mono"
    results = ModelCard.load(path).data.eval_results
    found = {(r.dataset_name, r.metric_type): r.metric_value for r in results}
    assert found[("mMARCO (fr)", "mrr_at_10")] == 0.3123
    assert found[("mMARCO (de)", "recall_at_1000")] == 0.95
    assert found[("mMARCO (average)", "mrr_at_10")] == 0.2562
    assert len(results) == 12
    assert {r.task_type for r in results} == {"text-ranking"}
    assert {r.dataset_type for r in results} == {"unicamp-dl/mmarco"}
    assert {r.dataset_split for r in results} == {"dev"}
    assert "| fr | 0.3123 | 0.4000 | 0.8000 | 0.9000 |" in path.read_text()


def test_results_of_another_format_are_refused(mono_xm_fr: Path) -> None:
    with pytest.raises(ValueError, match="Not an evaluation results file"):
        render_model_card(mono_xm_fr, "test-org/mono", CardOptions(eval_results=[{"results": []}]))


def test_raw_colbert_ai_checkpoint_must_be_converted_first(tiny_colbert_xm: Path) -> None:
    with pytest.raises(ValueError, match="Convert it first: `xm-integrations convert"):
        render_model_card(tiny_colbert_xm, "test-org/raw")


def test_generic_xmod_card_needs_a_license(xmod_encoder: Path) -> None:
    with pytest.raises(ValueError, match="--license"):
        render_model_card(xmod_encoder, "test-org/enc")


def test_the_package_ships_every_template() -> None:
    """One copy of the templates, inside the package (and in its package data), and none elsewhere."""
    from xm_integrations.hub.cards import TEMPLATE_NAMES, template_folder

    folder = template_folder()
    assert folder == REPO_ROOT / "xm_integrations" / "hub" / "templates"
    assert all((folder / name).is_file() for name in TEMPLATE_NAMES.values())
    assert not (REPO_ROOT / "model_cards").exists()


def run_snippets(card: ModelCard, only: tuple[int, ...] | None = None) -> list[dict]:
    """Execute the card's python blocks (those at positions ``only``), each in a fresh namespace; return them."""
    blocks = PYTHON_BLOCK.findall(card.text)
    namespaces = []
    for block in (blocks if only is None else [blocks[i] for i in only]):
        namespace: dict = {"__name__": "__snippet__"}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, "<model card snippet>", "exec"), namespace)  # noqa: S102
        namespaces.append(namespace)
    return namespaces


@pytest.mark.parametrize("name, expected_blocks", [
    ("mono_xm_fr", 4), ("colbert_xm_fr", 3), ("xmod_encoder", 4), ("xmod_classifier", 3),
])
def test_every_snippet_runs(name: str, expected_blocks: int, request: pytest.FixtureRequest, hub_cache: Path) -> None:
    folder = request.getfixturevalue(name)
    repo_id = f"test-snippets/{name}"
    populate_hub_cache(folder, repo_id, hub_cache)
    card = render_model_card(folder, repo_id, CardOptions(license="apache-2.0"))

    namespaces = run_snippets(card)

    assert len(namespaces) == expected_blocks
    assert all(repo_id in block for block in PYTHON_BLOCK.findall(card.text))


def test_mono_xm_snippets_agree_with_each_other(mono_xm_fr: Path, hub_cache: Path) -> None:
    """The transformers snippet (raw lang_ids) and the xm_integrations one (MonoXM and XMFlagReranker, language
    aliases) give the same scores."""
    repo_id = "test-snippets/mono-agree"
    populate_hub_cache(mono_xm_fr, repo_id, hub_cache)
    transformers_ns, ours_ns = run_snippets(render_model_card(mono_xm_fr, repo_id), only=(2, 3))
    np.testing.assert_allclose(transformers_ns["scores"].numpy(), ours_ns["scores"], atol=1e-5)
    flag = ours_ns["reranker"].compute_score([list(p) for p in ours_ns["pairs"]], language=["fr_XX", "de_DE"],
                                             normalize=True)
    np.testing.assert_allclose(transformers_ns["scores"].numpy(), flag, atol=1e-5)


def test_colbert_transformers_snippet_matches_colbert_ai(colbert_xm_fr: Path, hub_cache: Path) -> None:
    """The card's hand-written transformers query encoding equals colbert-ai's vectors (the reference fixture)."""
    fixtures = REPO_ROOT / "tests" / "fixtures" / "colbert_ai"
    reference = json.loads((fixtures / "colbert_ai_reference.json").read_text())
    arrays = np.load(fixtures / "colbert_ai_reference.npz")
    repo_id = "test-snippets/colbert-agree"
    populate_hub_cache(colbert_xm_fr, repo_id, hub_cache)
    card = render_model_card(colbert_xm_fr, repo_id)
    snippet = PYTHON_BLOCK.findall(card.text)[1]
    query = reference["queries"][0]  # French, like the card's first example language
    snippet = snippet.replace(json.dumps("Quand la tour Eiffel a-t-elle été construite ?", ensure_ascii=False),
                              json.dumps(query, ensure_ascii=False))
    assert json.dumps(query, ensure_ascii=False) in snippet
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(snippet, "<snippet>", "exec"), namespace)  # noqa: S102
    np.testing.assert_allclose(namespace["query_vectors"][0].numpy(), arrays["fr_XX.query_embeddings"][0], atol=1e-5)


def test_tiny_colbert_card_states_lengths(colbert_xm_fr: Path, tiny_colbert_xm: Path) -> None:
    metadata = json.loads((tiny_colbert_xm / "artifact.metadata").read_text())
    text = render_model_card(colbert_xm_fr, "x/colbert").text
    assert f"`<mask>` to\n{metadata['query_maxlen']} tokens" in text
    assert f"documents cut at {metadata['doc_maxlen']} tokens" in text
    assert f"{metadata['dim']} dimensions per token" in text
