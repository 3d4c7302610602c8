"""Fixtures for the training tests: fresh tiny models (training changes them) and small multilingual datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from xm_integrations import ColBERTXM, MonoXM

#: One row per language, each text distinct, so a row can be recognised in a batch by its token ids.
ROWS = [
    {"query": "what is green tea", "passage": "green tea is a drink made from leaves", "language": "en"},
    {"query": "qu'est-ce que le thé vert", "passage": "le thé vert est une boisson faite de feuilles", "language": "fr"},
    {"query": "was ist grüner tee", "passage": "grüner tee ist ein getränk aus blättern", "language": "de"},
    {"query": "qué es el té verde", "passage": "el té verde es una bebida hecha de hojas", "language": "es-ES"},
    {"query": "what is coffee", "passage": "coffee is a drink made from roasted beans", "language": None},
    {"query": "o que é o café", "passage": "o café é uma bebida feita de grãos torrados", "language": "Portuguese"},
]
NEGATIVES = [
    "the river flows to the sea", "la rivière coule vers la mer", "der fluss fließt ins meer",
    "el río fluye hacia el mar", "mountains are high", "o rio corre para o mar",
]
#: The adapter code each row should reach (None: the training language, English here).
EXPECTED_CODES = ["en_XX", "fr_XX", "de_DE", "es_XX", "en_XX", "pt_XX"]


@pytest.fixture
def mono(tiny_mono_xm: Path) -> MonoXM:
    return MonoXM(str(tiny_mono_xm), language="en")


@pytest.fixture
def colbert(tiny_colbert_xm: Path) -> ColBERTXM:
    return ColBERTXM(str(tiny_colbert_xm), language="en")
