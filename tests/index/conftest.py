"""Index fixtures: the tiny ColBERT-XM and the reference vectors of the shared corpus, encoded once per session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.index.reference import CORPUS, QUERIES
from xm_integrations import ColBERTXM


@pytest.fixture(scope="session")
def model(tiny_colbert_xm) -> ColBERTXM:
    return ColBERTXM(str(tiny_colbert_xm), device="cpu")


@pytest.fixture(scope="session")
def encoded(model):
    """The reference: every passage's float16-rounded vectors and every query's vectors, from the model directly."""
    documents = model.encode_document([p["text"] for p in CORPUS], language=[p["language"] for p in CORPUS])
    queries = model.encode_query(QUERIES, language="en")
    return ([d.numpy().astype(np.float16).astype(np.float32) for d in documents], [q.numpy() for q in queries])
