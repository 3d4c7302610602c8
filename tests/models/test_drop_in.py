"""Our classes accept what the stock methods accept, with the stock meaning: compared with the stock classes on one folder.

References: stock ``MultiVectorEncoder`` (``encode``, ``similarity``, ``similarity_pairwise`` and
``util.similarity.maxsim``), stock ``FlagReranker`` (NumPy pairs), and the shapes the XMOD model
really receives (``batch_size`` and the token budget, counted with a forward hook).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.util import similarity as st_similarity

from tests.models.test_mono_xm import PAIRS
from xm_integrations import ColBERTXM, FastInferenceConfig, MonoXM, XMColBERTReranker, XMFlagReranker
from xm_integrations.testing.corpus import SAMPLE_PASSAGES

TEXTS = ["La tour Eiffel a été construite à Paris.", "Le thé vert contient de la caféine, mais moins que le café.",
         "Bonjour !", "Une phrase un peu plus longue que les autres, avec des virgules, des points; et plus."]


@pytest.fixture(scope="module")
def colbert_folder(tiny_colbert_xm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("drop-in") / "colbert-fr"
    ColBERTXM(str(tiny_colbert_xm), language="fr", device="cpu").save(str(folder))
    return folder


@pytest.fixture(scope="module")
def ours(colbert_folder: Path) -> ColBERTXM:
    return ColBERTXM(str(colbert_folder), device="cpu")


@pytest.fixture(scope="module")
def stock(colbert_folder: Path) -> MultiVectorEncoder:
    return MultiVectorEncoder(str(colbert_folder), device="cpu")


def _close(a, b, atol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(torch.as_tensor(x), torch.as_tensor(y), atol=atol, rtol=0)


def test_encode_without_task_is_stocks_encode(ours: ColBERTXM, stock: MultiVectorEncoder) -> None:
    _close(ours.encode(TEXTS), stock.encode(TEXTS))
    _close(ours.encode_document(TEXTS), stock.encode_document(TEXTS))
    _close(ours.encode_query(TEXTS), stock.encode_query(TEXTS))
    # encode() and encode_document() differ by colbert-ai's marker, in both libraries alike
    assert ours.encode(TEXTS[:1])[0].shape[0] + 1 == ours.encode_document(TEXTS[:1])[0].shape[0]


def _padded(vectors: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(vectors, batch_first=True)  # zero rows as padding


@pytest.mark.parametrize("pairwise", [False, True])
def test_similarity_takes_stock_arguments_with_stock_meaning(ours: ColBERTXM, stock: MultiVectorEncoder,
                                                             pairwise: bool) -> None:
    queries = stock.encode_query(TEXTS)
    documents = stock.encode_document(TEXTS)
    ours_fn = ours.similarity_pairwise if pairwise else ours.similarity
    stock_fn = stock.similarity_pairwise if pairwise else stock.similarity
    q_pad, d_pad = _padded(queries), _padded(documents)
    q_mask = torch.tensor([[True] * len(q) + [False] * (q_pad.shape[1] - len(q)) for q in queries])
    d_mask = torch.tensor([[True] * len(d) + [False] * (d_pad.shape[1] - len(d)) for d in documents])
    d_mask[1, :3] = False  # a mask that says more than the padding
    for kwargs, args in [
        ({}, (queries, documents)),
        ({}, (q_pad, d_pad)),  # unmasked padded tensors: zero rows are padding, as in stock
        ({"a_mask": q_mask, "b_mask": d_mask}, (q_pad, d_pad)),
        ({"chunk_elements": 1000, "device": "cpu"}, (queries, documents)),
        ({"length_normalize": True}, (q_pad, d_pad)),
    ]:
        expected = stock_fn(*args, **kwargs)
        got = ours_fn(*args, **kwargs)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_similarity_of_an_empty_document_is_stocks(ours: ColBERTXM, stock: MultiVectorEncoder) -> None:
    queries = stock.encode_query(TEXTS[:2])
    documents = [*stock.encode_document(TEXTS[:2]), torch.zeros(0, queries[0].shape[1])]
    torch.testing.assert_close(ours.similarity(queries, documents), stock.similarity(queries, documents))
    torch.testing.assert_close(ours.similarity(queries, documents),
                               st_similarity.maxsim(queries, documents))  # the library function too


def test_a_stock_multi_vector_loss_gives_stocks_value_on_our_model(ours: ColBERTXM, stock: MultiVectorEncoder) -> None:
    """sentence-transformers' multi-vector losses call similarity(a, b, a_mask=..., b_mask=..., chunk_elements=None)."""
    from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss

    def loss_value(model) -> float:
        # The same features for both models (stock's tokenization): only the scoring can differ.
        features = [dict(stock.preprocess(TEXTS[:2], task="query"), task="query"),
                    dict(stock.preprocess(TEXTS[2:], task="document"), task="document")]
        with torch.no_grad():
            return float(MultiVectorMultipleNegativesRankingLoss(model)(features, None))

    assert loss_value(ours) == pytest.approx(loss_value(stock), abs=1e-5)


def test_compute_score_accepts_numpy_pairs(tiny_mono_xm: Path, tmp_path: Path, ours: ColBERTXM) -> None:
    from FlagEmbedding import FlagReranker

    folder = tmp_path / "mono-fr"
    MonoXM(str(tiny_mono_xm), language="fr", device="cpu").save(str(folder))
    stock_flag = FlagReranker(str(folder), devices="cpu")
    flag = XMFlagReranker(str(folder), devices="cpu")
    array = np.array(PAIRS)
    np.testing.assert_allclose(flag.compute_score(array), stock_flag.compute_score(array), atol=1e-5)
    np.testing.assert_allclose(flag.compute_score(array[0]), stock_flag.compute_score(array[0]), atol=1e-5)
    mono = MonoXM(str(folder), device="cpu")
    np.testing.assert_allclose(mono.predict(array), mono.predict(PAIRS), atol=0)
    reranker = XMColBERTReranker(model=ours)
    assert reranker.compute_score(array) == reranker.compute_score(PAIRS)
    assert reranker.compute_score(array[0]) == reranker.compute_score([PAIRS[0]])


class _Shapes:
    """The ``input_ids`` shapes the XMOD encoder receives, through a forward pre-hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.handle = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))

    def __enter__(self) -> _Shapes:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


MANY_PAIRS = [(q, p) for q, p in PAIRS for _ in range(8)]


def _encoder(model) -> torch.nn.Module:
    xmod = model._xmod_model()
    return getattr(xmod, "roberta", xmod)


def test_batch_size_caps_the_pairs_per_forward_pass(tiny_mono_xm: Path) -> None:
    mono = MonoXM(str(tiny_mono_xm), language="fr", device="cpu")
    with _Shapes(_encoder(mono)) as seen:
        capped = mono.predict(MANY_PAIRS, batch_size=5, show_progress_bar=False)
    assert seen.shapes and max(rows for rows, _ in seen.shapes) <= 5
    with _Shapes(_encoder(mono)) as seen:
        free = mono.predict(MANY_PAIRS, show_progress_bar=False)
    assert max(rows for rows, _ in seen.shapes) > 5  # the token budget alone: far more than stock's 32 allows
    np.testing.assert_allclose(capped, free, atol=1e-5)
    with _Shapes(_encoder(mono)) as seen:
        mono.rank(PAIRS[0][0], [p for _, p in MANY_PAIRS], batch_size=3)
    assert max(rows for rows, _ in seen.shapes) <= 3
    with _Shapes(_encoder(mono)) as seen:
        mono.rank(PAIRS[0][0], [p for _, p in MANY_PAIRS])
    assert max(rows for rows, _ in seen.shapes) > 3


def test_max_batch_tokens_caps_a_forward_pass(tiny_mono_xm: Path, tiny_colbert_xm: Path) -> None:
    budget = 256
    config = FastInferenceConfig(max_batch_tokens=budget)
    for model, call in [
        (MonoXM(str(tiny_mono_xm), language="fr", device="cpu", fast_inference=config),
         lambda m: m.predict(MANY_PAIRS, show_progress_bar=False)),
        (XMFlagReranker(str(tiny_mono_xm), language="fr", devices="cpu", fast_inference=config),
         lambda m: m.compute_score(MANY_PAIRS)),
        (ColBERTXM(str(tiny_colbert_xm), language="fr", device="cpu", fast_inference=config),
         lambda m: m.encode_document([p for _, p in MANY_PAIRS], show_progress_bar=False)),
    ]:
        with _Shapes(_encoder(model)) as seen:
            call(model)
        assert len(seen.shapes) > 1, type(model).__name__
        assert all(rows * width <= budget or rows == 1 for rows, width in seen.shapes), (type(model), seen.shapes)


def test_flag_reranker_batch_size_caps_when_given(tiny_mono_xm: Path) -> None:
    flag = XMFlagReranker(str(tiny_mono_xm), language="fr", devices="cpu")
    with _Shapes(_encoder(flag)) as seen:
        flag.compute_score(MANY_PAIRS, batch_size=4)
    assert max(rows for rows, _ in seen.shapes) <= 4
    constructed = XMFlagReranker(str(tiny_mono_xm), language="fr", devices="cpu", batch_size=6)
    with _Shapes(_encoder(constructed)) as seen:
        constructed.compute_score(MANY_PAIRS)
    assert max(rows for rows, _ in seen.shapes) <= 6


def test_encode_document_returns_compact_tensors(tiny_colbert_xm: Path) -> None:
    documents = [text for texts in SAMPLE_PASSAGES.values() for text in texts][:12]
    compact = ColBERTXM(str(tiny_colbert_xm), language="fr", device="cpu").encode_document(documents)
    for vector in compact:
        assert vector.untyped_storage().nbytes() == vector.numel() * vector.element_size()
    views = ColBERTXM(str(tiny_colbert_xm), language="fr", device="cpu",
                      fast_inference=FastInferenceConfig(share_batch_storage=True)).encode_document(documents)
    assert any(v.untyped_storage().nbytes() > v.numel() * v.element_size() for v in views)
    _close(compact, views, atol=0)


def test_fast_inference_of_the_wrong_type_is_named(tiny_mono_xm: Path) -> None:
    with pytest.raises(TypeError, match="fast_inference must be True, False or a FastInferenceConfig"):
        MonoXM(str(tiny_mono_xm), fast_inference="yes")
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive integer"):
        FastInferenceConfig(max_batch_tokens=0)


@pytest.mark.parametrize("kind", ["mono", "colbert"])
def test_saving_without_default_language_warns_once_with_the_fix(kind: str, tiny_mono_xm: Path,
                                                                 tiny_colbert_xm: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    model = MonoXM(str(tiny_mono_xm), device="cpu") if kind == "mono" else ColBERTXM(str(tiny_colbert_xm), device="cpu")
    with caplog.at_level("WARNING"):
        model.save(str(tmp_path / "saved"))
    messages = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert not any("usage snippet" in message for message in messages), messages
    assert sum("without default_language" in message and "set_default_language" in message
               for message in messages) == 1, messages
