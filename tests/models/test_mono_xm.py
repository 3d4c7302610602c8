"""MonoXM against plain transformers: ``XmodForSequenceClassification(**inputs, lang_ids=...)`` in fp32.

The reference tokenizes a batch as sentence-transformers does (``tokenizer(queries, passages,
padding=True, truncation=True)``) and passes the adapter ids explicitly; it never goes through our
classes. Every comparison that could pass by accident (a wrong adapter giving the same score) is
guarded by a check that the adapters really differ on these inputs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer, XmodForSequenceClassification

from xm_integrations import MissingLanguageError, MonoXM, UnknownLanguageError, resolve_language
from xm_integrations.languages.routing import RoutedPair
from xm_integrations.models.reranking import route_pairs
from xm_integrations.testing.corpus import SAMPLE_PASSAGES, SAMPLE_QUERIES
from xm_integrations.xmod.language_api import install_language_resolution

MONO_XM_REPO = "antoinelouis/mono-xm"
ATOL = 1e-5  # float32 on the CPU: tests that compare scores pin device="cpu" (CUDA defaults to fp16 autocast)
HALF_ATOL = 5e-3  # fp16 autocast on CUDA (scores are probabilities)

# Pairs whose passages are in known languages (the expected adapters of language="auto").
KNOWN = [
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["fr_XX"][0], "fr_XX"),
    (SAMPLE_QUERIES["de_DE"], SAMPLE_PASSAGES["de_DE"][1], "de_DE"),
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["zh_CN"][0], "zh_CN"),
    (SAMPLE_QUERIES["fr_XX"], SAMPLE_PASSAGES["es_XX"][3], "es_XX"),
    (SAMPLE_QUERIES["en_XX"], SAMPLE_PASSAGES["ru_RU"][0], "ru_RU"),
    (SAMPLE_QUERIES["de_DE"], SAMPLE_PASSAGES["en_XX"][1], "en_XX"),
]
PAIRS = [(query, passage) for query, passage, _ in KNOWN]
KNOWN_LANGUAGES = [language for _, _, language in KNOWN]


class Reference:
    """Plain transformers, fp32, with explicit ``lang_ids``."""

    def __init__(self, path: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = XmodForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()

    def logits(self, pairs: Sequence[tuple[str, str]], languages: Sequence[str], **tokenizer_kwargs: Any) -> np.ndarray:
        kwargs = {"padding": True, "truncation": True, "max_length": 512, **tokenizer_kwargs}
        inputs = self.tokenizer([q for q, _ in pairs], [p for _, p in pairs], return_tensors="pt", **kwargs)
        ids = torch.tensor([self.model.config.languages.index(language) for language in languages])
        with torch.no_grad():
            return self.model(**inputs, lang_ids=ids).logits.view(-1).numpy()

    def scores(self, pairs: Sequence[tuple[str, str]], languages: Sequence[str] | str, **kwargs: Any) -> np.ndarray:
        """What ``CrossEncoder.predict`` gives: the sigmoid of the logit."""
        languages = [languages] * len(pairs) if isinstance(languages, str) else languages
        return 1 / (1 + np.exp(-self.logits(pairs, languages, **kwargs)))


@pytest.fixture(scope="module")
def reference(tiny_mono_xm: Path) -> Reference:
    return Reference(tiny_mono_xm)


@pytest.fixture(scope="module")
def model(tiny_mono_xm: Path) -> MonoXM:
    """No default language, like the published checkpoint; tests that set one restore this."""
    return MonoXM(str(tiny_mono_xm), device="cpu")


def run_in_threads(score: Callable[[Any], Any], jobs: dict[str, Any], repeats: int = 5) -> dict[str, list[Any]]:
    """``score(jobs[name])`` ``repeats`` times in one thread per job, all released together; results per job."""
    results: dict[str, list[Any]] = {name: [] for name in jobs}
    start = threading.Barrier(len(jobs))

    def work(name: str) -> None:
        start.wait()
        for _ in range(repeats):
            results[name].append(score(jobs[name]))

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for name in jobs:
        assert len(results[name]) == repeats, f"thread {name!r} did not finish"
    return results


def assert_adapters_differ(reference: Reference, pairs: Sequence[tuple[str, str]], a: str, b: str) -> None:
    """Guard: on these pairs, adapters ``a`` and ``b`` give different scores (else a test could pass by accident)."""
    assert np.abs(reference.scores(pairs, a) - reference.scores(pairs, b)).min() > 1e-3


def test_constructor_language_sets_the_default(tiny_mono_xm: Path, reference: Reference) -> None:
    french = MonoXM(str(tiny_mono_xm), language="French", device="cpu")
    assert french.default_language == "fr_XX"
    assert len(french.languages) == 81 and french.languages[7] == "fr_XX"
    assert_adapters_differ(reference, PAIRS, "fr_XX", "en_XX")
    np.testing.assert_allclose(french.predict(PAIRS), reference.scores(PAIRS, "fr_XX"), atol=ATOL)
    single = french.predict(PAIRS[0])
    assert np.ndim(single) == 0
    np.testing.assert_allclose(single, reference.scores(PAIRS[:1], "fr_XX")[0], atol=ATOL)


def test_checkpoint_default_language_is_used(tiny_mono_xm: Path, reference: Reference) -> None:
    german = MonoXM(str(tiny_mono_xm), config_kwargs={"default_language": "de_DE"}, device="cpu")
    assert german.default_language == "de_DE"
    assert_adapters_differ(reference, PAIRS, "de_DE", "en_XX")
    np.testing.assert_allclose(german.predict(PAIRS), reference.scores(PAIRS, "de_DE"), atol=ATOL)


def test_set_default_language_resolves_aliases(model: MonoXM, reference: Reference) -> None:
    try:
        model.set_default_language("zh-Hant")
        assert model.default_language == "zh_TW"
        np.testing.assert_allclose(model.predict(PAIRS), reference.scores(PAIRS, "zh_TW"), atol=ATOL)
        with pytest.raises(UnknownLanguageError, match="Klingon"):
            model.set_default_language("Klingon")
        assert model.default_language == "zh_TW"
    finally:
        model.model.config.default_language = None


def test_one_language_per_call_leaves_the_default_alone(tiny_mono_xm: Path, reference: Reference) -> None:
    french = MonoXM(str(tiny_mono_xm), language="fr", device="cpu")
    assert_adapters_differ(reference, PAIRS, "de_DE", "fr_XX")
    np.testing.assert_allclose(french.predict(PAIRS, language="de-DE"), reference.scores(PAIRS, "de_DE"), atol=ATOL)
    assert french.default_language == "fr_XX"
    np.testing.assert_allclose(french.predict(PAIRS), reference.scores(PAIRS, "fr_XX"), atol=ATOL)


def test_language_list_interleaving_three_languages(model: MonoXM, reference: Reference) -> None:
    pairs = PAIRS * 2
    languages = ["fr", "German", "zh-CN"] * 4
    codes = ["fr_XX", "de_DE", "zh_CN"] * 4
    expected = reference.scores(pairs, codes)
    # Guard: the same pairs through one adapter would not match.
    assert np.abs(expected - reference.scores(pairs, "fr_XX")).max() > 1e-3
    for batch_size in (1, 4, 32):  # batches of one language, mixed batches, one batch
        np.testing.assert_allclose(model.predict(pairs, language=languages, batch_size=batch_size), expected, atol=ATOL)


def test_mixed_languages_are_batched_by_adapter(tiny_mono_xm: Path) -> None:
    """Stock batching (``fast_inference=False``) cuts batches after grouping pairs by adapter: one
    run per language over the whole call."""
    model = MonoXM(str(tiny_mono_xm), device="cpu", fast_inference=False)
    seen: list[list[int]] = []
    original = model.preprocess

    def spy(inputs: Any, *args: Any, **kwargs: Any) -> dict:
        features = original(inputs, *args, **kwargs)
        seen.append(features["lang_ids"].tolist())
        return features

    model.preprocess = spy  # type: ignore[method-assign]
    try:
        model.predict(PAIRS * 2, language=["fr", "de", "zh"] * 4, batch_size=3)
    finally:
        del model.preprocess
    flat = [lang_id for batch in seen for lang_id in batch]
    assert len(seen) == 4 and sorted(flat) == sorted([7, 8, 22] * 4)
    runs = 1 + sum(a != b for a, b in zip(flat, flat[1:]))
    assert runs == 3


def test_auto_detects_each_passage(model: MonoXM, reference: Reference) -> None:
    expected = reference.scores(PAIRS, KNOWN_LANGUAGES)
    assert np.abs(expected - reference.scores(PAIRS, "en_XX")).max() > 1e-3
    np.testing.assert_allclose(model.predict(PAIRS, language="auto"), expected, atol=ATOL)
    # "auto" inside a list, beside explicit languages:
    mixed = ["auto", "fr", "auto", "auto", "de", "auto"]
    codes = [code if lang == "auto" else resolve_language(lang) for lang, code in zip(mixed, KNOWN_LANGUAGES)]
    np.testing.assert_allclose(model.predict(PAIRS, language=mixed), reference.scores(PAIRS, codes), atol=ATOL)


def test_auto_uses_the_query_when_the_passage_is_blank(model: MonoXM, reference: Reference) -> None:
    pairs = [(SAMPLE_PASSAGES["de_DE"][0], "   ")]
    np.testing.assert_allclose(model.predict(pairs, language="auto"), reference.scores(pairs, "de_DE"), atol=ATOL)
    assert_adapters_differ(reference, pairs, "de_DE", "en_XX")


def test_rank_with_a_language_per_document(model: MonoXM, reference: Reference) -> None:
    query = SAMPLE_QUERIES["en_XX"]
    documents = [passage for _, passage in PAIRS]
    expected = reference.scores([(query, d) for d in documents], KNOWN_LANGUAGES)
    for language in (KNOWN_LANGUAGES, "auto"):
        ranked = model.rank(query, documents, language=language, return_documents=True, top_k=4)
        assert [r["corpus_id"] for r in ranked] == list(np.argsort(-expected)[:4])
        for result in ranked:
            assert result["score"] == pytest.approx(float(expected[result["corpus_id"]]), abs=ATOL)
            assert type(result["text"]) is str and result["text"] == documents[result["corpus_id"]]
    assert model.rank(query, [], language="fr") == []


# --- The three snippets of the Mono-XM model card, on the tiny checkpoint loaded by repo id ----------------

CARD_PAIRS = [("query", "paragraph1"), ("query", "paragraph2")]


def test_model_card_sentence_transformers_snippet(hub_cache: Path, reference: Reference) -> None:
    model = MonoXM(MONO_XM_REPO)
    model.model.set_default_language("fr_FR")
    scores = model.predict(CARD_PAIRS)
    assert model.default_language == "fr_XX"
    # The card's snippet picks the device: on CUDA it runs the default fp16 autocast.
    atol = ATOL if model.device.type == "cpu" else HALF_ATOL
    np.testing.assert_allclose(scores, reference.scores(CARD_PAIRS, "fr_XX"), atol=atol)
    assert_adapters_differ(reference, CARD_PAIRS, "fr_XX", "en_XX")


def test_model_card_line_does_not_patch_transformers(hub_cache: Path) -> None:
    MonoXM(MONO_XM_REPO).model.set_default_language("fr_FR")
    plain = AutoModelForSequenceClassification.from_pretrained(MONO_XM_REPO)
    with pytest.raises(ValueError, match="fr_FR"):
        plain.set_default_language("fr_FR")  # stock transformers still accepts only exact codes


def test_model_card_transformers_snippet(hub_cache: Path, reference: Reference) -> None:
    """The closest faithful form of snippet (3): AutoModel is transformers' class, so resolve the language first."""
    tokenizer = AutoTokenizer.from_pretrained(MONO_XM_REPO)
    pairs = [list(pair) for pair in CARD_PAIRS]
    features = tokenizer(pairs, padding=True, truncation=True, return_tensors="pt")
    expected = reference.logits(CARD_PAIRS, ["fr_XX", "fr_XX"])

    model = AutoModelForSequenceClassification.from_pretrained(MONO_XM_REPO)
    install_language_resolution(model)  # this instance only
    model.set_default_language("fr_FR")
    with torch.no_grad():
        np.testing.assert_allclose(model(**features).logits.view(-1).numpy(), expected, atol=ATOL)

    other = AutoModelForSequenceClassification.from_pretrained(MONO_XM_REPO)
    other.set_default_language(resolve_language("fr_FR", other.config.languages))
    with torch.no_grad():
        np.testing.assert_allclose(other(**features).logits.view(-1).numpy(), expected, atol=ATOL)


# --- Bad input -----------------------------------------------------------------------------------------------


def test_unknown_language_names_the_fix(model: MonoXM) -> None:
    with pytest.raises(UnknownLanguageError) as error:
        model.predict(PAIRS, language="frnch")
    assert "frnch" in str(error.value) and "fr_XX" in str(error.value)
    with pytest.raises(UnknownLanguageError, match="xx_YY"):
        model.predict(PAIRS, language=["fr", "de", "xx_YY", "fr", "fr", "fr"])
    with pytest.raises(UnknownLanguageError):
        model.rank("q", ["a", "b"], language="Klingon")


def test_language_list_of_the_wrong_length(model: MonoXM) -> None:
    with pytest.raises(ValueError, match=r"language has 2 entries but there are 6 inputs"):
        model.predict(PAIRS, language=["fr", "de"])
    with pytest.raises(ValueError, match=r"7 entries but there are 6"):
        model.rank("q", [p for _, p in PAIRS], language=["fr"] * 7)


def test_no_language_and_no_default(model: MonoXM) -> None:
    assert model.default_language is None
    with pytest.raises(MissingLanguageError, match="language="):
        model.predict(PAIRS)


def test_empty_input_gives_an_empty_result(model: MonoXM) -> None:
    result = model.predict([])
    assert isinstance(result, np.ndarray) and result.shape == (0,)
    assert model.predict([], language=[]).shape == (0,)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("q", "p"), ("q", "p"), ("q", None)], r"Input 2 has a passage of type NoneType"),
        ([None, ("q", "p")], r"Input 0 is None"),
        ([("q", "p"), (3, "p")], r"Input 1 has a query of type int"),
        ([("q", "p"), ("q", "p", "r")], r"Input 1 is tuple of length 3"),
        ([("q", "p"), "qp"], r"Input 1 is 'qp'"),
    ],
)
def test_non_string_entries_name_the_index(model: MonoXM, pairs: list, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        model.predict(pairs, language="fr")


def test_out_of_range_adapter_ids_are_refused(model: MonoXM, reference: Reference) -> None:
    """XMOD gives silently zeroed adapters for an id it lacks; pairs carrying one must fail, never be scored."""
    assert len(model.languages) == 81
    for bad in (81, 1000, -1):
        with pytest.raises(IndexError, match=rf"\[{bad}\] are out of range.*81 adapters \(ids 0 to 80\)"):
            model.predict([RoutedPair(PAIRS[0], 7), RoutedPair(PAIRS[1], bad)])
    # A carried id in range is used as is (what rank() relies on), and equals the reference adapter.
    np.testing.assert_allclose(model.predict([RoutedPair(PAIRS[0], 8)]), reference.scores(PAIRS[:1], "de_DE"),
                               atol=ATOL)
    # An explicit language re-routes carried pairs, so a bad carried id cannot leak through.
    np.testing.assert_allclose(model.predict([RoutedPair(PAIRS[0], 99)], language="fr"),
                               reference.scores(PAIRS[:1], "fr_XX"), atol=ATOL)


def test_empty_strings_are_scored(model: MonoXM, reference: Reference) -> None:
    pairs = [("", ""), ("query", ""), ("", "passage"), PAIRS[0]]
    np.testing.assert_allclose(model.predict(pairs, language="fr"), reference.scores(pairs, "fr_XX"), atol=ATOL)


def test_long_texts_are_truncated_longest_first_to_512_tokens(model: MonoXM, reference: Reference) -> None:
    long_passage = " ".join(SAMPLE_PASSAGES["en_XX"]) * 40
    long_query = " ".join(SAMPLE_PASSAGES["fr_XX"]) * 30
    pairs = [("short query", long_passage), (long_query, long_passage), PAIRS[1]]
    assert len(reference.tokenizer(long_query, long_passage)["input_ids"]) > 2000
    assert model.max_seq_length == 512
    expected = reference.scores(pairs, "de_DE", truncation="longest_first", max_length=512)
    np.testing.assert_allclose(model.predict(pairs, language="de"), expected, atol=ATOL)


# --- Concurrency, pools, saving ------------------------------------------------------------------------------


def test_threads_with_different_languages_do_not_interfere(model: MonoXM) -> None:
    pairs = PAIRS * 3
    jobs = {"fr": ["fr"] * len(pairs), "mixed": ["zh", "de", "en"] * 6}
    alone = {name: model.predict(pairs, language=languages, batch_size=4) for name, languages in jobs.items()}
    assert np.abs(alone["fr"] - alone["mixed"]).max() > 1e-3
    results = run_in_threads(lambda languages: model.predict(pairs, language=languages, batch_size=4), jobs)
    for name in jobs:
        for scores in results[name]:
            np.testing.assert_array_equal(scores, alone[name])
    assert model.default_language is None


def call_with_timeout(function: Callable[[], Any], seconds: float) -> Any:
    """Run ``function`` in a thread; fail the test (instead of hanging the suite) if it takes longer."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no result after {seconds} s: the call hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.skipif(not hasattr(CrossEncoder, "_inference"), reason="before 6.2 pool workers call predict()")
def test_pool_worker_scoring_step_takes_the_fast_path(model: MonoXM, reference: Reference,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """sentence-transformers 6.2's pool workers call ``_inference`` directly: it takes the fast path
    for routed pairs (the same scores as stock), and stays stock when asked for stock batching."""
    import xm_integrations.models.mono_xm as mono_module

    calls = []
    real = mono_module.score_pairs
    monkeypatch.setattr(mono_module, "score_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    routed = route_pairs(model, PAIRS, "fr")
    kwargs = dict(prompt=None, batch_size=4, show_progress_bar=False, apply_softmax=False, device="cpu")
    # predict() resolves the activation before the workers see it: the model's sigmoid, or None for none.
    fast = model._inference(routed, activation_fn=model.activation_fn, **kwargs)
    assert calls == [1] and isinstance(fast, torch.Tensor) and fast.shape == (len(PAIRS),)
    np.testing.assert_allclose(fast.numpy(), reference.scores(PAIRS, "fr_XX"), atol=ATOL)
    fast_logits = model._inference(routed, activation_fn=None, **kwargs)
    model.fast_inference = False
    try:
        stock_logits = model._inference(routed, activation_fn=None, **kwargs)
    finally:
        model.fast_inference = True
    assert calls == [1, 1]
    np.testing.assert_allclose(stock_logits.numpy(), fast_logits.numpy(), atol=ATOL)
    np.testing.assert_allclose(torch.sigmoid(fast_logits).numpy(), fast.numpy(), atol=ATOL)


@pytest.mark.slow
def test_two_process_pool(tiny_mono_xm: Path, reference: Reference) -> None:
    """Slow (about 30-60 s on 2 cores): starts two spawned CPU workers, then a temporary pool of two."""
    model = MonoXM(str(tiny_mono_xm), language="fr", device="cpu")
    pairs = PAIRS * 3
    languages = ["fr", "de", "zh", "es", "ru", "en"] * 3
    single = model.predict(pairs, language=languages, batch_size=4)
    np.testing.assert_allclose(single, reference.scores(pairs, [resolve_language(x) for x in languages]), atol=ATOL)
    pool = model.start_multi_process_pool(["cpu", "cpu"])
    try:
        pooled = call_with_timeout(
            lambda: model.predict(pairs, language=languages, pool=pool, batch_size=4, chunk_size=5), 240
        )
        np.testing.assert_allclose(pooled, single, atol=1e-6)
        # Without chunk_size: two chunks per worker (fast_inference.pool_chunk_size), same scores.
        pooled = call_with_timeout(lambda: model.predict(pairs, language=languages, pool=pool), 240)
        np.testing.assert_allclose(pooled, single, atol=1e-6)
        auto = call_with_timeout(lambda: model.predict(PAIRS, language="auto", pool=pool, chunk_size=2), 60)
        np.testing.assert_allclose(auto, reference.scores(PAIRS, KNOWN_LANGUAGES), atol=ATOL)

        # The default set after the pool started still applies: it is resolved here, not in the workers.
        model.set_default_language("de")
        default = call_with_timeout(lambda: model.predict(PAIRS, pool=pool, chunk_size=2), 60)
        np.testing.assert_allclose(default, reference.scores(PAIRS, "de_DE"), atol=ATOL)

        began = time.monotonic()
        with pytest.raises(UnknownLanguageError):
            call_with_timeout(lambda: model.predict(pairs, language="Klingon", pool=pool), 10)
        with pytest.raises(ValueError, match="2 entries"):
            call_with_timeout(lambda: model.predict(pairs, language=["fr", "de"], pool=pool), 10)
        assert time.monotonic() - began < 5

        # An error raised inside a worker (here by an activation that cannot apply) reaches the caller.
        with pytest.raises(Exception, match="mat1 and mat2|shapes cannot be multiplied"):
            call_with_timeout(lambda: model.predict(PAIRS, pool=pool, activation_fn=torch.nn.Linear(5, 5)), 60)
        # ... and the pool still serves.
        again = call_with_timeout(lambda: model.predict(PAIRS, language="de", pool=pool, chunk_size=2), 60)
        np.testing.assert_allclose(again, default, atol=1e-6)

        # rank() over a temporary pool made from a list of devices, one language per document.
        query, documents = SAMPLE_QUERIES["en_XX"], [passage for _, passage in PAIRS]
        expected = reference.scores([(query, d) for d in documents], KNOWN_LANGUAGES)
        ranked = call_with_timeout(
            lambda: model.rank(query, documents, language=KNOWN_LANGUAGES, device=["cpu", "cpu"], chunk_size=2), 240
        )
        assert [r["corpus_id"] for r in ranked] == list(np.argsort(-expected))
        np.testing.assert_allclose([r["score"] for r in ranked], np.sort(expected)[::-1], atol=ATOL)

        # Dead workers are noticed within seconds instead of leaving the caller waiting.
        for process in pool["processes"]:
            process.kill()
            process.join()
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="died"):
            call_with_timeout(lambda: model.predict(PAIRS, language="de", pool=pool), 30)
        assert time.monotonic() - began < 10
    finally:
        model.stop_multi_process_pool(pool)


def test_saved_folder_loads_in_stock_libraries(tmp_path: Path, tiny_mono_xm: Path, reference: Reference) -> None:
    pytest.importorskip("FlagEmbedding")
    from FlagEmbedding import FlagReranker

    MonoXM(str(tiny_mono_xm), language="fr").save(str(tmp_path))
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert all(module["type"].startswith("sentence_transformers.") for module in modules)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["default_language"] == "fr_XX" and "auto_map" not in config

    expected = reference.scores(PAIRS, "fr_XX")
    stock = CrossEncoder(str(tmp_path))
    assert type(stock) is CrossEncoder
    np.testing.assert_allclose(stock.predict(PAIRS), expected, atol=ATOL)

    flag = FlagReranker(str(tmp_path), devices="cpu")
    per_pair = [reference.logits([pair], ["fr_XX"])[0] for pair in PAIRS]
    np.testing.assert_allclose(flag.compute_score(PAIRS), per_pair, atol=ATOL)

    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert auto.config.default_language == "fr_XX"
    features = reference.tokenizer([q for q, _ in PAIRS], [p for _, p in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(auto(**features).logits.view(-1).numpy(), reference.logits(PAIRS, ["fr_XX"] * 6),
                                   atol=ATOL)


#: Run in a fresh interpreter: a pool whose workers are dead, a call large enough to fill the input
#: pipe, then a normal exit (sentence-transformers >= 6.2 reports the dead workers and cancels the join).
_EXIT_AFTER_DEAD_POOL = """
import sys
from xm_integrations import MonoXM

model = MonoXM(sys.argv[1], language="fr")
pool = model.start_multi_process_pool(["cpu"])
for process in pool["processes"]:
    process.kill()
    process.join()
pairs = [("query " * 50, "passage " * 400)] * 400  # about 1.5 MB of chunks: more than a pipe holds
try:
    model.predict(pairs, pool=pool, chunk_size=10)
except RuntimeError as error:
    assert "died" in str(error), error
else:
    raise AssertionError("no error from a dead pool")
model.stop_multi_process_pool(pool)
print("stopped")
"""


@pytest.mark.slow
def test_exit_never_waits_on_chunks_left_for_dead_workers(tiny_mono_xm: Path) -> None:
    """Slow (about 20 s): after a failed pool call, the program still exits (sentence-transformers 6.0 blocked forever)."""
    import subprocess
    import sys

    try:
        result = subprocess.run([sys.executable, "-c", _EXIT_AFTER_DEAD_POOL, str(tiny_mono_xm)],
                                capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the interpreter did not exit: it waits on chunks queued for dead workers")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stopped" in result.stdout


def test_preprocess_takes_each_pairs_adapter_from_its_texts(model: MonoXM, reference: Reference) -> None:
    """Stock cross-encoder losses zip routed texts into plain tuples: each pair's passage carries its adapter."""
    from xm_integrations.languages.routing import RoutedText

    index = model.languages.index
    pairs = [(RoutedText(query, index(language)), RoutedText(passage, index(language)))
             for (query, passage), language in zip(PAIRS, KNOWN_LANGUAGES)]
    assert_adapters_differ(reference, PAIRS, "en_XX", "fr_XX")
    features = model.preprocess(pairs)
    assert features["lang_ids"].tolist() == [index(language) for language in KNOWN_LANGUAGES]
    with torch.no_grad():
        logits = model(features)["scores"].view(-1).numpy()
    np.testing.assert_allclose(logits, reference.logits(PAIRS, KNOWN_LANGUAGES), atol=ATOL)
