"""Conversion: the converted ColBERT-XM, loaded by repo id through the offline hub cache, encodes as colbert-ai did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.hub.hub_fixtures import SMALL_LANGUAGES, colbert_xm_fr  # noqa: F401
from tests.paths import FIXTURES as TEST_FIXTURES
from tests.paths import REPO_ROOT
from xm_integrations.hub import ModelFolderError, ValidationError, convert_model
from xm_integrations.testing import build_tiny_mono_xm, populate_hub_cache

FIXTURES = TEST_FIXTURES / "colbert_ai"
REFERENCE = json.loads((FIXTURES / "colbert_ai_reference.json").read_text())
ARRAYS = np.load(FIXTURES / "colbert_ai_reference.npz")


def reference_documents(language: str) -> list[np.ndarray]:
    """colbert-ai's document vectors for ``language``, split per document."""
    flat = ARRAYS[REFERENCE["per_language"][language]["doc_embeddings"]]
    bounds = np.cumsum([0, *REFERENCE["tokenization"]["doc_lengths"]])
    return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def reference_queries(language: str) -> np.ndarray:
    return ARRAYS[REFERENCE["per_language"][language]["query_embeddings"]]


def assert_vectors_equal(actual, expected, atol: float = 1e-5) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        got = got.detach().cpu().numpy() if hasattr(got, "detach") else np.asarray(got)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=atol)


def test_converted_colbert_by_repo_id_encodes_like_colbert_ai(colbert_xm_fr: Path, tiny_colbert_xm: Path,
                                                              hub_cache: Path) -> None:
    """Convert, file under a repo id, load by that id offline, encode: colbert-ai's vectors, in every language.

    The colbert-ai 0.2.22 fixture is the independent reference; ColBERTXM on the original colbert-ai
    layout is checked against it too, so "equal to ColBERTXM on the original" follows.
    """
    from sentence_transformers import MultiVectorEncoder

    from xm_integrations import ColBERTXM

    assert REFERENCE["checkpoint_info"]["kwargs"] == {"dim": 32, "query_maxlen": 32, "doc_maxlen": 256, "seed": 0}
    populate_hub_cache(colbert_xm_fr, "test-convert/colbert-xm-fr", hub_cache)
    stock = MultiVectorEncoder("test-convert/colbert-xm-fr")
    ours = ColBERTXM("test-convert/colbert-xm-fr")
    original = ColBERTXM(str(tiny_colbert_xm))
    queries, documents = REFERENCE["queries"], REFERENCE["documents"]

    for language in REFERENCE["languages"]:
        stock[0].auto_model.set_default_language(language)
        for model, kwargs in ((stock, {}), (ours, {"language": language}), (original, {"language": language})):
            assert_vectors_equal(model.encode_query(queries, show_progress_bar=False, **kwargs),
                                 reference_queries(language))
            assert_vectors_equal(model.encode_document(documents, show_progress_bar=False, **kwargs),
                                 reference_documents(language))


def test_saved_default_language_needs_no_call(colbert_xm_fr: Path) -> None:
    from sentence_transformers import MultiVectorEncoder

    stock = MultiVectorEncoder(str(colbert_xm_fr))  # default_language fr_XX from config.json
    assert_vectors_equal(stock.encode_query(REFERENCE["queries"], show_progress_bar=False), reference_queries("fr_XX"))


def test_conversion_keeps_adapters_lengths_and_markers(colbert_xm_fr: Path, tiny_colbert_xm: Path) -> None:
    source_config = json.loads((tiny_colbert_xm / "config.json").read_text())
    metadata = json.loads((tiny_colbert_xm / "artifact.metadata").read_text())
    config = json.loads((colbert_xm_fr / "config.json").read_text())
    st_config = json.loads((colbert_xm_fr / "config_sentence_transformers.json").read_text())
    transformer = json.loads((colbert_xm_fr / "sentence_bert_config.json").read_text())
    dense = json.loads((colbert_xm_fr / "1_Dense" / "config.json").read_text())

    assert config["languages"] == source_config["languages"] and len(config["languages"]) == 81
    assert config["default_language"] == "fr_XX"
    assert transformer["query_expansion"]["length"] == metadata["query_maxlen"]
    assert transformer["query_expansion"]["attend"] == metadata["attend_to_mask_tokens"]
    assert transformer["document_length"] == metadata["doc_maxlen"]
    assert dense["out_features"] == metadata["dim"]
    # colbert-ai's "[unused0]"/"[unused1]" are <unk> in XLM-R's vocabulary (marker id 3).
    assert REFERENCE["tokenization"]["query_marker_id"] == REFERENCE["tokenization"]["unk_token_id"]
    assert st_config["prompts"] == {"query": "<unk>", "document": "<unk>"}
    assert not (colbert_xm_fr / "artifact.metadata").exists()
    assert not (colbert_xm_fr / "README.md").exists()  # push renders the card
    # Stock module types only (anything else needs trust_remote_code since sentence-transformers 6.0) ...
    modules = json.loads((colbert_xm_fr / "modules.json").read_text())
    assert modules and all(module["type"].startswith("sentence_transformers.") for module in modules)
    # ... and weights in safetensors only: nothing to unpickle.
    weights = sorted(p.relative_to(colbert_xm_fr).as_posix() for p in colbert_xm_fr.rglob("*")
                     if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt"))
    assert weights == ["1_Dense/model.safetensors", "model.safetensors"]


def test_convert_repo_id_from_the_hub_cache(hub_cache: Path, tmp_path: Path) -> None:
    """``antoinelouis/colbert-xm`` as published (tiny stand-in in the offline cache), default language German."""
    from sentence_transformers import MultiVectorEncoder

    result = convert_model("antoinelouis/colbert-xm", tmp_path / "out", language="German")
    assert result.default_language == "de_DE" and result.report.passed
    stock = MultiVectorEncoder(str(result.output_dir))
    assert_vectors_equal(stock.encode_document(REFERENCE["documents"], show_progress_bar=False),
                         reference_documents("de_DE"))


def test_convert_cli_mono_xm_equals_stock_with_config_override(tmp_path: Path) -> None:
    """Mono-XM only gains its default language: stock CrossEncoder on the output scores as on the source with
    the language forced through config_kwargs (transformers' own mechanism, none of our code)."""
    from sentence_transformers import CrossEncoder

    from xm_integrations.cli import main

    source = build_tiny_mono_xm(tmp_path / "src", languages=SMALL_LANGUAGES)
    assert main(["convert", str(source), str(tmp_path / "out"), "--language", "German"]) == 0

    pairs = [("Was ist Photosynthese?", "Die Photosynthese wandelt Sonnenlicht in Zucker um."), ("a", "b")]
    converted = CrossEncoder(str(tmp_path / "out")).predict(pairs)
    forced = CrossEncoder(str(source), config_kwargs={"default_language": "de_DE"}).predict(pairs)
    np.testing.assert_allclose(converted, forced, atol=1e-6)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["languages"] == list(SMALL_LANGUAGES)


def test_convert_errors_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xm_integrations.cli import main

    source = build_tiny_mono_xm(tmp_path / "src", languages=SMALL_LANGUAGES)
    with pytest.raises(ValueError, match="pass --language"):
        convert_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("x")
    assert main(["convert", str(source), str(tmp_path / "busy"), "--language", "fr"]) == 2  # bad argument
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep").read_text() == "x"

    with pytest.raises(ModelFolderError, match="neither a local folder nor a Hub repo"):
        convert_model("no-such-org/no-such-model", tmp_path / "out2", language="fr")
    with pytest.raises(Exception, match="no adapter|Unknown language"):
        convert_model(source, tmp_path / "out3", language="Klingon")
    assert not (tmp_path / "out3").exists()


def test_failed_check_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversion whose output does not reproduce the source leaves neither the output nor a partial folder."""
    from xm_integrations.models.mono_xm import MonoXM

    source = build_tiny_mono_xm(tmp_path / "src", languages=SMALL_LANGUAGES, default_language="fr_XX")
    original = MonoXM.predict
    monkeypatch.setattr(MonoXM, "predict", lambda self, *a, **k: original(self, *a, **k) * 0.5)
    with pytest.raises(ValidationError, match="does not reproduce the source"):
        convert_model(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.slow
def test_convert_script_in_its_own_process(tmp_path: Path) -> None:
    """scripts/convert_colbert_xm.py as users run it: a colbert-ai checkpoint becomes a folder that stock
    MultiVectorEncoder encodes as ColBERTXM does on the original layout."""
    import os
    import subprocess
    import sys

    from sentence_transformers import MultiVectorEncoder

    from xm_integrations import ColBERTXM
    from xm_integrations.testing import build_tiny_colbert_xm

    source = build_tiny_colbert_xm(tmp_path / "src", languages=SMALL_LANGUAGES)
    script = REPO_ROOT / "scripts" / "convert_colbert_xm.py"
    done = subprocess.run([sys.executable, str(script), str(source), str(tmp_path / "out"), "--language", "German"],
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(colbert-xm, default language de_DE)" in done.stdout
    queries, documents = REFERENCE["queries"], REFERENCE["documents"]
    stock = MultiVectorEncoder(str(tmp_path / "out"))
    original = ColBERTXM(str(source))
    assert_vectors_equal(stock.encode_query(queries, show_progress_bar=False),
                         [v.cpu().numpy() for v in original.encode_query(queries, language="de_DE",
                                                                         show_progress_bar=False)])
    assert_vectors_equal(stock.encode_document(documents, show_progress_bar=False),
                         [v.cpu().numpy() for v in original.encode_document(documents, language="de_DE",
                                                                            show_progress_bar=False)])
