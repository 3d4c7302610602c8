"""``compile_xmod_layers`` and ``model.compile()``: the compiled XMOD layers compute what the stock layers do (CPU)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from transformers import XmodConfig, XmodForSequenceClassification

from xm_integrations import ColBERTXM, MonoXM
from xm_integrations.engine import pipeline as fi
from xm_integrations.testing.checkpoints import build_tiny_tokenizer
from xm_integrations.xmod import compiled_layers as cl

LANGS = ["en_XX", "fr_XX", "de_DE", "es_XX", "zh_CN"]
#: Mixed languages in runs of different lengths, as a grouped fast-path batch or an ungrouped stock one.
LANG_IDS = torch.tensor([0, 0, 3, 3, 3, 1, 4, 4, 2, 0, 1, 1])


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles from scratch: the compiler caches per function, and so does ``compiled_layers``."""
    torch._dynamo.reset()
    cl._COMPILED.clear()
    yield
    torch._dynamo.reset()
    cl._COMPILED.clear()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _classifier(attention: str = "sdpa", **kwargs) -> XmodForSequenceClassification:
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = XmodConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=130, initializer_range=0.2, languages=LANGS,
                        default_language="en_XX", pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=1,
                        **kwargs)
    config._attn_implementation = attention
    return XmodForSequenceClassification(config).eval()


def _batch(tokenizer, n: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    words = "the tower was built in paris for fair tea contains less caffeine than coffee".split()
    queries = [" ".join(rng.choice(words, size=int(rng.integers(2, 6)))) for _ in range(n)]
    passages = [" ".join(rng.choice(words, size=int(rng.integers(3, 30)))) for _ in range(n)]
    return tokenizer(queries, passages, padding=True, return_tensors="pt")


class _CountingBackend:
    """A ``torch.compile`` backend that runs the traced graphs as they are and counts compilations."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("variant", [
    {},  # xmod-base: post-norm, layer norm reused before the adapter
    {"pre_norm": True},
    {"ln_before_adapter": False},
    {"adapter_layer_norm": True},
    {"adapter_reuse_layer_norm": False},
])
def test_compiled_layers_match_stock_layers(tokenizer, attention, variant):
    model = _classifier(attention, **variant)
    batch = _batch(tokenizer)
    with torch.inference_mode():
        stock = model(**batch, lang_ids=LANG_IDS).logits
        backend = _CountingBackend()
        assert cl.compile_xmod_layers(model, backend=backend) == 3
        compiled = model(**batch, lang_ids=LANG_IDS).logits
        assert backend.graphs == 1  # one graph for every layer
        # Another batch shape and language layout with as many runs (7), runs of one row included: no new graph.
        other, other_ids = _batch(tokenizer, n=9, seed=1), torch.tensor([1, 1, 4, 0, 2, 2, 3, 0, 1])
        expected = _classifier(attention, **variant)(**other, lang_ids=other_ids).logits
        torch.testing.assert_close(model(**other, lang_ids=other_ids).logits, expected, rtol=1e-5, atol=1e-6)
        assert backend.graphs == 1
    torch.testing.assert_close(compiled, stock, rtol=1e-5, atol=1e-6)


def test_each_count_of_language_runs_is_one_graph(tokenizer, monkeypatch):
    """A language in several runs (the stock batching's order) is grouped first, so it adds no graph;
    batches with more runs than ``MAX_COMPILED_RUNS`` run the same layers uncompiled."""
    model, stock_model = _classifier(), _classifier()
    backend = _CountingBackend()
    cl.compile_xmod_layers(model, backend=backend)
    batch = _batch(tokenizer)
    one_language, two_runs = torch.zeros(12, dtype=torch.long), torch.tensor([2] * 5 + [4] * 7)
    alternating, five_runs = torch.tensor([0, 1] * 6), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4])
    cases = [(one_language, 1), (two_runs, 2), (alternating, 2), (one_language, 2), (five_runs, 2)]
    with torch.inference_mode():
        for position, (lang_ids, graphs) in enumerate(cases):
            if lang_ids is five_runs:
                monkeypatch.setattr(cl, "MAX_COMPILED_RUNS", 4)
            torch.testing.assert_close(model(**batch, lang_ids=lang_ids).logits,
                                       stock_model(**batch, lang_ids=lang_ids).logits, rtol=1e-5, atol=1e-6)
            assert backend.graphs == graphs, position


def test_unpadded_batches_share_the_padded_batches_graph(tokenizer):
    """In the fast paths, a batch without padding (no attention mask reaches the encoder) runs the
    graph of padded batches with the same count of runs, masking nothing, and computes what the
    stock layers do."""
    model, stock_model = _classifier(), _classifier()
    backend = _CountingBackend()
    cl.compile_xmod_layers(model, backend=backend)
    batch = _batch(tokenizer)
    assert not batch["attention_mask"].all()
    batch["attention_mask"] = fi.model_attention_mask(model, batch["attention_mask"], padded=True)
    unpadded = torch.tensor(np.random.default_rng(3).integers(5, len(tokenizer), size=(12, 20)))
    five_runs = torch.tensor([0, 3, 3, 1, 4, 2, 2])
    with torch.inference_mode():
        for inputs, lang_ids in ((batch, LANG_IDS), ({"input_ids": unpadded}, LANG_IDS),
                                 ({"input_ids": unpadded[:7, :11]}, five_runs)):
            torch.testing.assert_close(model(**inputs, lang_ids=lang_ids).logits,
                                       stock_model(**inputs, lang_ids=lang_ids).logits, rtol=1e-5, atol=1e-6)
            assert backend.graphs == 1


def test_each_layout_compiles_apart_so_the_compilers_limit_applies_per_layout(tokenizer):
    """torch's dynamo stops compiling a function's code after ``recompile_limit`` graphs and runs it
    eagerly; each layout (count of runs) has code of its own, so with a limit of 1
    every layout still compiles."""
    model, stock_model = _classifier(), _classifier()
    backend = _CountingBackend()
    cl.compile_xmod_layers(model, backend=backend)
    batch = _batch(tokenizer)
    layouts = [torch.zeros(12, dtype=torch.long), torch.tensor([2] * 5 + [4] * 7),
               torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4])]
    with torch.inference_mode(), torch._dynamo.config.patch(recompile_limit=1):
        for lang_ids in layouts:
            torch.testing.assert_close(model(**batch, lang_ids=lang_ids).logits,
                                       stock_model(**batch, lang_ids=lang_ids).logits, rtol=1e-5, atol=1e-6)
    assert backend.graphs == len(layouts)


def test_compiled_layers_keep_the_default_language_and_refuse_bad_ids(tokenizer):
    model = _classifier()
    batch = _batch(tokenizer, n=3)
    with torch.inference_mode():
        stock = model(**batch).logits  # XMOD builds lang_ids for the default language
        cl.compile_xmod_layers(model, backend="eager")
        torch.testing.assert_close(model(**batch).logits, stock, rtol=1e-5, atol=1e-6)
        with pytest.raises(IndexError, match="out of range"):
            model(**batch, lang_ids=torch.tensor([0, len(LANGS), 0]))


def test_training_runs_the_encoders_own_forward(tokenizer, monkeypatch):
    model = _classifier()
    cl.compile_xmod_layers(model, backend="eager")

    def refuse(settings):
        raise AssertionError("the compiled graphs ran in training mode")

    monkeypatch.setattr(cl, "_compiled", refuse)
    model.train()
    model(**_batch(tokenizer, n=4), lang_ids=LANG_IDS[:4]).logits.sum().backward()
    assert model.roberta.encoder.layer[0].attention.self.query.weight.grad is not None


def test_compiled_model_pickles_and_each_copy_compiles_for_itself(tokenizer):
    model = _classifier()
    cl.compile_xmod_layers(model, backend="eager")
    clone = pickle.loads(pickle.dumps(model))
    encoder = clone.roberta.encoder
    assert encoder.__dict__["forward"].encoder is encoder
    batch = _batch(tokenizer, n=5)
    with torch.inference_mode():
        torch.testing.assert_close(clone(**batch, lang_ids=LANG_IDS[:5]).logits,
                                   model(**batch, lang_ids=LANG_IDS[:5]).logits, rtol=0, atol=0)


def test_unsupported_attention_is_refused_naming_the_fix(monkeypatch):
    monkeypatch.setattr(cl, "_SUPPORTED_ATTENTION", ("sdpa",))
    with pytest.raises(ValueError, match="attn_implementation"):
        cl.compile_xmod_layers(_classifier("eager"))


def _transformers_scores(path, pairs, languages) -> np.ndarray:
    """Plain transformers, one pair at a time with explicit ``lang_ids``: the independent reference."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xm_integrations import resolve_language

    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    codes = list(model.config.languages)
    scores = []
    with torch.inference_mode():
        for (query, passage), language in zip(pairs, languages):
            lang_id = codes.index(resolve_language(language, codes))
            logits = model(**tokenizer(query, passage, return_tensors="pt"), lang_ids=torch.tensor([lang_id])).logits
            scores.append(torch.sigmoid(logits[0, 0]).item())
    return np.array(scores)


def test_mono_xm_compile_scores_as_transformers_and_saves_a_stock_folder(tiny_mono_xm, tmp_path):
    """The default backend (inductor): the fast path and the stock batching both run the compiled layers."""
    model = MonoXM(str(tiny_mono_xm), device="cpu")
    pairs = [("where is the tower", "the tower was built in paris " * k) for k in range(1, 9)]
    languages = ["en", "fr", "de", "en", "fr", "de", "en", "fr"]
    reference = _transformers_scores(tiny_mono_xm, pairs, languages)
    model.compile()
    encoder = model._xmod_model().roberta.encoder
    assert isinstance(encoder.__dict__["forward"], cl._CompiledEncoderForward)
    np.testing.assert_allclose(model.predict(pairs, language=languages), reference, rtol=1e-5, atol=1e-6)
    model.fast_inference = False
    np.testing.assert_allclose(model.predict(pairs, language=languages, batch_size=3), reference, rtol=1e-5,
                               atol=1e-6)
    model.set_default_language("en")
    model.save(str(tmp_path / "saved"))
    from sentence_transformers import CrossEncoder

    stock = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(stock.predict(pairs[:1]), model.predict(pairs[:1], language="en"), rtol=1e-5,
                               atol=1e-6)


def test_colbert_xm_compile_encodes_as_the_stock_batching(tiny_colbert_xm):
    """Reference: the same model's stock batching (sentence-transformers' modules over transformers'
    uncompiled layers), taken before compiling."""
    model = ColBERTXM(str(tiny_colbert_xm), device="cpu")
    documents = ["the tower was built in paris " * k for k in range(1, 6)]
    languages = ["en", "fr", "de", "en", "fr"]
    model.fast_inference = False
    reference = model.encode_document(documents, language=languages)
    model.fast_inference = True
    model.compile(backend="eager", options=None)
    settings = model._xmod_model().encoder.__dict__["forward"].settings
    assert settings == {"dynamic": True, "backend": "eager", "options": None}  # torch.compile's arguments, as given
    after = model.encode_document(documents, language=languages)
    for a, b in zip(after, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_takes_keyword_arguments_only(tiny_mono_xm):
    with pytest.raises(TypeError, match="keyword arguments only"):
        MonoXM(str(tiny_mono_xm), device="cpu").compile(True)


def test_attention_weights_and_hidden_states_are_still_recorded(tokenizer):
    model = _classifier("eager")
    stock_model = _classifier("eager")
    batch = _batch(tokenizer, n=4)
    cl.compile_xmod_layers(model, backend="eager")
    with torch.inference_mode():
        ours = model(**batch, lang_ids=LANG_IDS[:4], output_attentions=True, output_hidden_states=True)
        stock = stock_model(**batch, lang_ids=LANG_IDS[:4], output_attentions=True, output_hidden_states=True)
    assert len(ours.attentions) == len(stock.attentions) == 3
    for mine, theirs in zip(ours.attentions + ours.hidden_states, stock.attentions + stock.hidden_states):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_flag_reranker_model_compiles_through_the_function(tiny_mono_xm):
    """FlagEmbedding has no compile verb: ``compile_xmod_layers(reranker.model)`` is the way. Reference:
    plain transformers, one pair at a time."""
    pytest.importorskip("FlagEmbedding")
    from xm_integrations import XMFlagReranker, compile_xmod_layers

    reranker = XMFlagReranker(str(tiny_mono_xm), use_fp16=False, devices=["cpu"], language="en")
    pairs = [["where is the tower", "the tower was built in paris " * k] for k in range(1, 7)]
    languages = ["en", "fr", "de", "en", "fr", "de"]
    backend = _CountingBackend()
    assert compile_xmod_layers(reranker.model, backend=backend) == len(reranker.model.roberta.encoder.layer)
    scores = reranker.compute_score(pairs, language=languages, normalize=True)
    assert backend.graphs > 0
    np.testing.assert_allclose(scores, _transformers_scores(tiny_mono_xm, pairs, languages), rtol=1e-5, atol=1e-6)
