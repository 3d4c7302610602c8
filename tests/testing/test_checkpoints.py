"""The tiny checkpoints look like the Hub ones and load through plain transformers and the offline hub cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import constants, hf_hub_download
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, XmodModel

from tests.conftest import COLBERT_XM_REPO, MONO_XM_REPO
from tests.languages.test_resolution import XMOD_BASE_LANGUAGES
from xm_integrations.testing import TINY_LANGUAGES, build_tiny_colbert_xm, build_tiny_mono_xm, populate_hub_cache


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_mono_xm_layout(tiny_mono_xm):
    assert {p.name for p in tiny_mono_xm.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    config = json.loads((tiny_mono_xm / "config.json").read_text())
    assert config["model_type"] == "xmod"
    assert config["architectures"] == ["XmodForSequenceClassification"]
    assert config["default_language"] is None
    assert config["id2label"] == {"0": "LABEL_0"}
    assert config["languages"] == XMOD_BASE_LANGUAGES  # facebook/xmod-base's list, written out independently
    tokenizer = AutoTokenizer.from_pretrained(tiny_mono_xm)
    assert tokenizer.model_max_length == 512  # as XLM-R's: stock loaders truncate long inputs there
    assert len(tokenizer("word " * 2000, truncation=True)["input_ids"]) == 512


def test_mono_xm_loads_with_plain_transformers_and_fails_like_the_real_one(tiny_mono_xm):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_mono_xm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_mono_xm)
    features = tokenizer(["a query"], ["a passage"], return_tensors="pt")
    with pytest.raises(ValueError, match="Input language unknown"):
        model(**features)
    with pytest.raises(ValueError):
        model.set_default_language("fr_FR")  # the published card's line fails on the real layout too
    fr = model(**features, lang_ids=torch.tensor([TINY_LANGUAGES.index("fr_XX")])).logits
    de = model(**features, lang_ids=torch.tensor([TINY_LANGUAGES.index("de_DE")])).logits
    assert fr.shape == (1, 1)
    assert not torch.allclose(fr, de, atol=1e-4), "adapters must make a visible difference"


def test_colbert_xm_layout(tiny_colbert_xm):
    names = {p.name for p in tiny_colbert_xm.iterdir()}
    assert names >= {"config.json", "model.safetensors", "artifact.metadata", "tokenizer.json"}
    config = json.loads((tiny_colbert_xm / "config.json").read_text())
    assert config["architectures"] == ["HF_ColBERT"] and config["model_type"] == "xmod"
    metadata = json.loads((tiny_colbert_xm / "artifact.metadata").read_text())
    assert metadata["query_token_id"] == "[unused0]" and metadata["doc_token_id"] == "[unused1]"
    assert (metadata["query_maxlen"], metadata["doc_maxlen"]) == (32, 256)
    assert metadata["attend_to_mask_tokens"] is True and metadata["mask_punctuation"] is True
    assert metadata["similarity"] == "cosine"
    with safe_open(tiny_colbert_xm / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
        linear = weights.get_tensor("linear.weight")
    assert "linear.bias" not in keys
    assert linear.shape == (metadata["dim"], config["hidden_size"])
    assert all(key.startswith("roberta.") for key in keys - {"linear.weight"})
    # The encoder weights load into a plain XmodModel with nothing missing and nothing left over.
    encoder = XmodModel(AutoConfig.from_pretrained(tiny_colbert_xm), add_pooling_layer=False)
    with safe_open(tiny_colbert_xm / "model.safetensors", "pt") as weights:
        state = {key[len("roberta."):]: weights.get_tensor(key) for key in keys if key.startswith("roberta.")}
    result = encoder.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_colbert_xm_loads_with_plain_automodel(tiny_colbert_xm):
    """``AutoModel`` reads the HF_ColBERT file as users' transformers snippets do: ``roberta.*`` is the encoder."""
    model, info = AutoModel.from_pretrained(tiny_colbert_xm, output_loading_info=True)
    assert type(model) is XmodModel
    assert set(info["unexpected_keys"]) == {"linear.weight"}  # the ColBERT head, read separately
    assert {key.split(".")[0] for key in info["missing_keys"]} <= {"pooler"}  # ColBERT never uses it
    state = model.state_dict()
    with safe_open(tiny_colbert_xm / "model.safetensors", "pt") as weights:
        for key in weights.keys():
            if key.startswith("roberta."):
                assert torch.equal(state[key[len("roberta."):]], weights.get_tensor(key)), key


def test_builds_are_deterministic(tmp_path):
    first = _digest(build_tiny_mono_xm(tmp_path / "a"))
    assert first == _digest(build_tiny_mono_xm(tmp_path / "b"))
    assert _digest(build_tiny_colbert_xm(tmp_path / "c")) == _digest(build_tiny_colbert_xm(tmp_path / "d"))
    assert first != _digest(build_tiny_mono_xm(tmp_path / "e", seed=1))


def test_tokenizer_has_a_bare_word_start_piece(tiny_colbert_xm):
    # colbert-ai's punctuation skiplist takes encode(symbol)[0], which is "▁" for some symbols on XLM-R.
    tokenizer = AutoTokenizer.from_pretrained(tiny_colbert_xm)
    word_start = tokenizer.convert_tokens_to_ids("▁")
    firsts = {tokenizer.encode(symbol, add_special_tokens=False)[0] for symbol in "!'#(,.?@"}
    assert word_start in firsts and len(firsts) > 2
    assert tokenizer.convert_tokens_to_ids("[unused0]") == tokenizer.unk_token_id == 3


def test_hub_cache_layout_and_offline_resolution(hub_cache, tiny_mono_xm):
    assert constants.HF_HUB_OFFLINE and constants.HF_HUB_CACHE == str(hub_cache)
    repo = hub_cache / "models--antoinelouis--mono-xm"
    commit = (repo / "refs" / "main").read_text()
    snapshot_config = repo / "snapshots" / commit / "config.json"
    assert snapshot_config.is_symlink() and snapshot_config.resolve().parent == (repo / "blobs").resolve()
    path = hf_hub_download(MONO_XM_REPO, "config.json")
    assert open(path).read() == (tiny_mono_xm / "config.json").read_text()
    again = populate_hub_cache(tiny_mono_xm, MONO_XM_REPO, hub_cache)
    assert again.name == commit  # idempotent


def test_load_by_repo_id_in_a_fresh_offline_process(hub_cache, tiny_mono_xm, tiny_colbert_xm):
    """Loading by repo id goes through huggingface_hub's cache resolution with HF_HUB_OFFLINE=1.

    The reference is the same checkpoint loaded from its local folder in this process: the repo id
    must give the very same model, not merely one of the right shape.
    """
    fr = TINY_LANGUAGES.index("fr_XX")
    script = textwrap.dedent(
        f"""
        import json, torch
        from huggingface_hub import constants
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        assert constants.HF_HUB_OFFLINE
        model = AutoModelForSequenceClassification.from_pretrained({MONO_XM_REPO!r}).eval()
        tokenizer = AutoTokenizer.from_pretrained({MONO_XM_REPO!r})
        features = tokenizer(["a query"], ["a passage"], return_tensors="pt")
        with torch.no_grad():
            logit = model(**features, lang_ids=torch.tensor([{fr}])).logits.item()
        config = AutoConfig.from_pretrained({COLBERT_XM_REPO!r})
        encoder = AutoModel.from_pretrained({COLBERT_XM_REPO!r})
        checksum = sum(float(p.double().sum()) for n, p in encoder.named_parameters() if not n.startswith("pooler."))
        print(json.dumps({{"logit": logit, "architectures": config.architectures, "checksum": checksum}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])

    model = AutoModelForSequenceClassification.from_pretrained(tiny_mono_xm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_mono_xm)
    with torch.no_grad():
        expected = model(**tokenizer(["a query"], ["a passage"], return_tensors="pt"), lang_ids=torch.tensor([fr])).logits
    assert loaded["logit"] == pytest.approx(expected.item(), abs=1e-6)
    assert loaded["architectures"] == ["HF_ColBERT"]
    with safe_open(tiny_colbert_xm / "model.safetensors", "pt") as weights:
        checksum = sum(float(weights.get_tensor(k).double().sum()) for k in weights.keys() if k.startswith("roberta."))
    assert loaded["checksum"] == pytest.approx(checksum, rel=1e-9)


def test_missing_repo_fails_offline(hub_cache):
    with pytest.raises(Exception, match="(?i)offline|cannot find|not.*cache|LocalEntryNotFound"):
        hf_hub_download("antoinelouis/not-there", "config.json")
