"""The fast paths of ``xm_integrations.engine.pipeline`` keep what the stock paths compute (CPU)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from transformers import XmodConfig, XmodForSequenceClassification, XmodModel

from xm_integrations.engine import pipeline as fi
from xm_integrations.engine import planning
from xm_integrations.engine import precision as precision_module
from xm_integrations.engine import tokenization
from xm_integrations.models.colbert_xm import head as colbert_head
from xm_integrations.testing.checkpoints import build_tiny_tokenizer
from xm_integrations.xmod import adapters

LANGS = ["en_XX", "fr_XX", "de_DE", "es_XX", "zh_CN"]


def _config(**kwargs) -> XmodConfig:
    tokenizer = build_tiny_tokenizer()
    return XmodConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=130, initializer_range=0.2, languages=LANGS,
                      default_language="en_XX", pad_token_id=1, bos_token_id=0, eos_token_id=2, **kwargs)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def classifier() -> XmodForSequenceClassification:
    torch.manual_seed(0)
    return XmodForSequenceClassification(_config(num_labels=1)).eval()


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    words = "the tower was built in paris for fair tea contains less caffeine than coffee amazon forest".split()
    return [(" ".join(rng.choice(words, size=int(rng.integers(2, 6)))),
             " ".join(rng.choice(words, size=int(rng.integers(3, 40))))) for _ in range(n)]


def _stock_logits(model, tokenizer, pairs, lang_ids) -> torch.Tensor:
    """One pair at a time through the stock model: no padding, no batching effects."""
    out = []
    with torch.inference_mode():
        for (q, p), lang in zip(pairs, lang_ids):
            enc = tokenizer(q, p, return_tensors="pt", truncation=True, max_length=128)
            out.append(model(**enc, lang_ids=torch.tensor([lang])).logits[0].float())
    return torch.stack(out)


# -- adapters -------------------------------------------------------------------------------------


def test_fast_adapters_match_stock_on_mixed_languages(classifier, tokenizer):
    pairs = _pairs(12)
    lang_ids = torch.tensor([0, 0, 3, 3, 3, 1, 4, 4, 2, 0, 1, 1])
    enc = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    with torch.inference_mode():
        stock = classifier(**enc, lang_ids=lang_ids).logits
        assert adapters.install_fast_adapters(classifier) == 2
        fast = classifier(**enc, lang_ids=lang_ids).logits
    torch.testing.assert_close(fast, stock, rtol=0, atol=0)


def test_fast_adapters_default_language_and_idempotence(classifier, tokenizer):
    enc = tokenizer(["a tower"], ["built in paris"], return_tensors="pt")
    with torch.inference_mode():
        stock = classifier(**enc).logits  # lang_ids built by XMOD as float ones * index
        adapters.install_fast_adapters(classifier)
        adapters.install_fast_adapters(classifier)
        fast = classifier(**enc).logits
    torch.testing.assert_close(fast, stock, rtol=0, atol=0)


def test_fast_adapters_refuse_out_of_range_ids(classifier, tokenizer):
    adapters.install_fast_adapters(classifier)
    enc = tokenizer(["a"], ["b"], return_tensors="pt")
    with torch.inference_mode(), pytest.raises(IndexError, match="out of range"):
        classifier(**enc, lang_ids=torch.tensor([len(LANGS)]))


def test_model_with_fast_adapters_still_pickles(classifier):
    adapters.install_fast_adapters(classifier)
    clone = pickle.loads(pickle.dumps(classifier))
    output = [m for m in clone.modules() if hasattr(m, "adapter_modules")][0]
    assert output.__dict__["lang_adapter"].output is output


def test_lang_segments():
    assert adapters.lang_segments([2, 2, 0, 0, 0, 2]) == [(2, 0, 2), (0, 2, 5), (2, 5, 6)]
    assert adapters.lang_segments(torch.tensor([1.0, 1.0])) == [(1, 0, 2)]
    assert adapters.lang_segments([]) == []
    with pytest.raises(IndexError):
        adapters.lang_segments([0, 5], num_languages=3)


# -- batching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [True, False])
def test_plan_batches_covers_everything_within_budget(group):
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=500)
    langs = rng.integers(0, 5, size=500)
    batches = planning.plan_batches(lengths, langs, max_tokens=4096, group_languages=group)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for batch in batches:
        padded = -(-int(lengths[batch].max()) // 8) * 8
        assert len(batch) == 1 or len(batch) * padded <= 4096
        if group:  # one contiguous run per language present: XMOD runs one adapter call per language
            runs = adapters.lang_segments(langs[batch])
            assert len(runs) == len(set(langs[batch].tolist()))


def test_plan_batches_mixes_languages_into_full_batches():
    # Five languages cut into exactly the batches of one language: the budget decides, not the language.
    rng = np.random.default_rng(2)
    lengths, langs = rng.integers(50, 300, size=1000), rng.integers(0, 5, size=1000)
    mixed = planning.plan_batches(lengths, langs, max_tokens=32768)
    single = planning.plan_batches(lengths, max_tokens=32768)
    assert [len(b) for b in mixed] == [len(b) for b in single]
    assert all(len(set(langs[b].tolist())) == 5 for b in mixed)


def test_plan_batches_single_oversized_input_gets_its_own_batch():
    batches = planning.plan_batches([10_000, 5, 5], max_tokens=64)
    assert [len(b) for b in batches] == [1, 2]
    assert planning.plan_batches([], max_tokens=64) == []
    with pytest.raises(ValueError):
        planning.plan_batches([1], max_tokens=0)


def test_pad_batch():
    ids, mask = planning.pad_batch([[0, 5, 2], [0, 2]], pad_id=1)
    assert ids.shape == (2, 8)
    assert ids[1, :3].tolist() == [0, 2, 1] and mask.sum(1).tolist() == [3, 2]


def test_run_pipelined_keeps_order():
    out = fi.run_pipelined(list(range(7)), lambda x: x * 2, lambda y: y + 1)
    assert out == [1, 3, 5, 7, 9, 11, 13]


# -- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("group", [True, False])
def test_score_pairs_matches_stock_per_pair(classifier, tokenizer, group, attention):
    classifier.set_attn_implementation(attention)  # the fast path builds SDPA's mask itself
    pairs = _pairs(40, seed=3)
    lang_ids = np.random.default_rng(4).integers(0, len(LANGS), size=len(pairs))
    reference = _stock_logits(classifier, tokenizer, pairs, lang_ids)
    scores = fi.score_pairs(classifier, tokenizer, pairs, lang_ids, max_length=128, max_tokens=256,
                            group_languages=group, chunk_size=16)
    assert scores.dtype == torch.float32 and scores.shape == (40, 1)
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-5)
    # top-10 order unchanged
    assert torch.equal(torch.argsort(scores[:, 0], descending=True)[:10],
                       torch.argsort(reference[:, 0], descending=True)[:10])


def test_score_pairs_batch_without_padding(classifier, tokenizer):
    """Pairs of exactly 16 tokens make one batch with no padding, which SDPA runs without a mask."""
    pairs = [pair for pair in _pairs(3000, seed=8) if len(tokenizer(*pair)["input_ids"]) == 16][:6]
    assert len(pairs) == 6
    sequences = tokenization.tokenize(tokenizer, [q for q, _ in pairs], [p for _, p in pairs], max_length=128)
    [(_, input_ids, attention_mask, _, padded)] = fi.prepare_batches(sequences, None, 1, 4096, None, True, False)
    assert not padded and bool(attention_mask.all())
    assert fi.model_attention_mask(classifier, attention_mask, padded) is None
    reference = _stock_logits(classifier, tokenizer, pairs, [1] * 6)
    scores = fi.score_pairs(classifier, tokenizer, pairs, [1] * 6, max_length=128)
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-5)


def test_model_attention_mask_forms(classifier):
    """SDPA gets its broadcastable boolean form (no ``mask.all()`` sync in transformers); eager keeps 2D."""
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    sdpa = fi.model_attention_mask(classifier, mask, True)
    assert sdpa.shape == (2, 1, 1, 4) and sdpa.dtype == torch.bool and torch.equal(sdpa[:, 0, 0], mask.bool())
    assert fi.model_attention_mask(classifier, torch.ones(2, 4, dtype=torch.long), False) is None  # SDPA, no padding
    classifier.set_attn_implementation("eager")
    assert fi.model_attention_mask(classifier, mask, True) is mask


def test_score_pairs_default_language_and_empty(classifier, tokenizer):
    pairs = _pairs(5)
    reference = _stock_logits(classifier, tokenizer, pairs, [0] * 5)
    torch.testing.assert_close(fi.score_pairs(classifier, tokenizer, pairs, max_length=128), reference,
                               rtol=1e-5, atol=1e-5)
    assert fi.score_pairs(classifier, tokenizer, [], max_length=128).shape == (0, 1)


def test_score_pairs_half_precision_stays_close(classifier, tokenizer):
    """bf16 weights (CPU has bf16 kernels) and fp16 autocast: bounded error against float32."""
    pairs = _pairs(24, seed=5)
    lang_ids = np.random.default_rng(6).integers(0, len(LANGS), size=len(pairs))
    reference = fi.score_pairs(classifier, tokenizer, pairs, lang_ids, max_length=128)
    autocast = fi.score_pairs(classifier, tokenizer, pairs, lang_ids, max_length=128, autocast_dtype=torch.bfloat16)
    classifier.to(torch.bfloat16)
    half = fi.score_pairs(classifier, tokenizer, pairs, lang_ids, max_length=128)
    spread = float(reference.std())
    assert float((autocast - reference).abs().max()) < 0.1 * spread
    assert float((half - reference).abs().max()) < 0.2 * spread
    assert half.dtype == torch.float32


def test_encode_texts_colbert_head_matches_stock_encoder(tokenizer):
    torch.manual_seed(0)
    encoder = XmodModel(_config(), add_pooling_layer=False).eval()
    weight = torch.randn(16, 32) * 0.2
    texts = [" ".join(["tower", "paris", ",", "tea"] * k) for k in range(1, 9)]
    lang_ids = np.array([0, 1, 1, 2, 0, 4, 3, 3])
    skiplist = {tokenizer.encode(",", add_special_tokens=False)[0], tokenizer.pad_token_id}
    head = colbert_head.ColBERTDocumentHead(weight, sorted(skiplist))

    def ids(batch):
        return colbert_head.colbert_document_ids(tokenizer, batch, doc_maxlen=20, marker_id=tokenizer.unk_token_id)

    vectors = fi.encode_texts(encoder, tokenizer, texts, lang_ids, head=head, split=head.split, tokenize_fn=ids,
                              max_tokens=64, chunk_size=3)
    for text, lang, got in zip(texts, lang_ids, vectors):
        seq = ids([text])[0]
        assert len(seq) <= 20 and seq[1] == tokenizer.unk_token_id
        with torch.inference_mode():
            hidden = encoder(input_ids=torch.tensor([seq]), lang_ids=torch.tensor([lang])).last_hidden_state[0]
        expected = torch.nn.functional.normalize(hidden @ weight.T, dim=-1)
        keep = torch.tensor([t not in skiplist for t in seq])
        torch.testing.assert_close(got, expected[keep], rtol=1e-5, atol=1e-5)


def test_balanced_batches_even_out_and_respect_the_budget():
    lengths = np.full(200, 170)
    greedy = planning.plan_batches(lengths, max_tokens=32768, balance=False)
    balanced = planning.plan_batches(lengths, max_tokens=32768)
    assert [len(b) for b in greedy] == [186, 14]  # 170 tokens pad to 176
    assert [len(b) for b in balanced] == [100, 100]


def test_score_pairs_rescores_overflowing_pairs_in_float32(classifier, tokenizer, monkeypatch):
    pairs = _pairs(6)
    reference = fi.score_pairs(classifier, tokenizer, pairs, max_length=128)
    real_forward = classifier.forward

    def overflowing(*args, **kwargs):  # an fp16 overflow, only under autocast
        out = real_forward(*args, **kwargs)
        if torch.is_autocast_enabled("cpu"):
            out.logits = out.logits.clone().fill_(float("inf"))
        return out

    monkeypatch.setattr(classifier, "forward", overflowing)
    scores = fi.score_pairs(classifier, tokenizer, pairs, max_length=128, autocast_dtype=torch.bfloat16)
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-5)


def test_default_autocast_dtype():
    assert precision_module.default_autocast_dtype("cpu") is None
    assert precision_module.default_autocast_dtype("cuda") is torch.float16
    assert precision_module.default_autocast_dtype("cuda", torch.float32) is torch.float16
    # Half-precision weights run as loaded; CPU never autocasts.
    assert precision_module.default_autocast_dtype("cuda", torch.float16) is None
    assert precision_module.default_autocast_dtype("cuda", torch.bfloat16) is None
    assert precision_module.default_autocast_dtype("cpu", torch.float16) is None


def test_chunks_start_small_then_double_up_to_chunk_size():
    sizes = [len(chunk) for chunk in fi._chunks(10_000, 4096)]
    assert sizes == [256, 512, 1024, 2048, 4096, 2064]
    chunks = fi._chunks(10_000, 4096)
    assert chunks[0].start == 0 and chunks[-1].stop == 10_000
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert [len(chunk) for chunk in fi._chunks(5, 3)] == [3, 2]
    assert [len(chunk) for chunk in fi._chunks(100, 4096)] == [100]
    assert fi._chunks(0, 4096) == []


def test_inputs_are_tokenized_longest_first_so_each_chunk_holds_similar_lengths(classifier, tokenizer, monkeypatch):
    """Shuffled inputs are ordered by characters before chunking: each chunk's token lengths lie in a
    band of their own, the bands descend, and the scores still come back in input order."""
    rng = np.random.default_rng(11)
    pairs = [("where is the tower", " ".join(["paris"] * int(k))) for k in rng.permutation(np.arange(1, 41))]
    assert [int(i) for i in fi._input_order([3, 9, 1, 9])] == [1, 3, 0, 2]  # longest first, ties in input order
    chunk_lengths = []
    prepare_batches = fi.prepare_batches

    def recording(sequences, *args, **kwargs):
        chunk_lengths.append([len(sequence) for sequence in sequences])
        return prepare_batches(sequences, *args, **kwargs)

    monkeypatch.setattr(fi, "prepare_batches", recording)
    scores = fi.score_pairs(classifier, tokenizer, pairs, [2] * len(pairs), max_length=128, chunk_size=8)
    assert [len(lengths) for lengths in chunk_lengths] == [8] * 5
    assert all(min(longer) >= max(shorter) for longer, shorter in zip(chunk_lengths, chunk_lengths[1:]))
    torch.testing.assert_close(scores, _stock_logits(classifier, tokenizer, pairs, [2] * len(pairs)), rtol=1e-5,
                               atol=1e-5)


def test_pool_chunk_size_gives_each_worker_two_chunks():
    assert fi.pool_chunk_size(10_000, 2) == 2500
    assert fi.pool_chunk_size(10_001, 2) == 2501  # rounded up: never a fifth chunk for two workers
    assert fi.pool_chunk_size(3, 4) == 1
    assert fi.pool_chunk_size(0, 2) == 1  # stock rejects chunk_size 0
    assert fi.pool_chunk_size(10**7, 2) == fi.MAX_POOL_CHUNK


@pytest.mark.parametrize("max_length", [None, 6, 16, 64])
def test_tokenize_gives_the_tokenizers_ids(tokenizer, max_length):
    """The Rust-backend shortcut against transformers' own call: pairs and single texts, empty and
    whitespace-only texts, both truncated, non-Latin scripts."""
    first = ["hello world", "", "x " * 40, "  ", "abc", "Wie viel Koffein?", "y"]
    second = ["", "foo bar", "y " * 30, "z", "é ü 中文 😀", "Grüner Tee enthält Koffein.", " "]
    kwargs = {"padding": False, "return_attention_mask": False, "return_token_type_ids": False}
    if max_length is not None:
        kwargs.update(truncation=True, max_length=max_length)
    configured = (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding)
    ours = tokenization.tokenize(tokenizer, first, second, max_length=max_length)
    # The caller's tokenizer is left as it was configured (the shortcut truncates on a private copy).
    assert (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding) == configured
    assert ours == tokenizer(first, second, **kwargs)["input_ids"]
    assert tokenization.tokenize(tokenizer, first, max_length=max_length) == tokenizer(first, **kwargs)["input_ids"]


@pytest.mark.parametrize("max_length", [None, 9, 24])
def test_tokenize_without_special_tokens_and_only_second(tokenizer, max_length):
    """The other settings XMFlagReranker uses: single texts without special tokens, and pairs cut
    ``only_second`` (queries short enough to fit, as FlagEmbedding's are after their own cut)."""
    texts = ["hello world", "", "x " * 40, "é ü 中文 😀", "Grüner Tee enthält Koffein."]
    kwargs = {"padding": False, "return_attention_mask": False, "return_token_type_ids": False}
    if max_length is not None:
        kwargs.update(truncation=True, max_length=max_length)
    assert (tokenization.tokenize(tokenizer, texts, max_length=max_length, add_special_tokens=False)
            == tokenizer(texts, add_special_tokens=False, **kwargs)["input_ids"])
    first, second = ["a b", "tea", "", "x"], ["c " * 30, "coffee tea", "z", "y y y"]
    if max_length is not None:
        kwargs.update(truncation="only_second")
    assert (tokenization.tokenize(tokenizer, first, second, max_length=max_length, truncation="only_second")
            == tokenizer(first, second, **kwargs)["input_ids"])
    # A first text that leaves the second nothing: the same Rust error as transformers' call.
    with pytest.raises(Exception, match="Sequence to truncate too short"):
        tokenizer(["a b c d e"], ["c d"], truncation="only_second", max_length=6)
    with pytest.raises(Exception, match="Sequence to truncate too short"):
        tokenization.tokenize(tokenizer, ["a b c d e"], ["c d"], max_length=6, truncation="only_second")


def test_tokenize_large_batch_with_repeated_words(tokenizer):
    """Thousands of pairs (split across the Rust threads) whose words repeat, the case a word cache
    serves: the private copy, whose Unigram cache is off, gives transformers' own ids."""
    pairs = _pairs(3000, seed=5)
    first, second = [q for q, _ in pairs], [p for _, p in pairs]
    expected = tokenizer(first, second, truncation=True, max_length=24, padding=False)["input_ids"]
    assert tokenization.tokenize(tokenizer, first, second, max_length=24) == expected
