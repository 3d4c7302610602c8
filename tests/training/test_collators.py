"""route_rows and the collators: languages per row, grouping by adapter, labels kept with their rows, errors."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import EXPECTED_CODES, ROWS
from xm_integrations import MissingLanguageError, UnknownLanguageError
from xm_integrations.languages.routing import RoutedText
from xm_integrations.training import ColBERTXMDataCollator, LanguageRouting, MonoXMDataCollator, route_rows


def _rows(**extra):
    return [{"query": r["query"], "passage": r["passage"], "label": float(i), "language": r["language"], **extra}
            for i, r in enumerate(ROWS)]


def test_languages_resolved_grouped_and_labels_aligned(mono) -> None:
    collator = MonoXMDataCollator(preprocess_fn=mono.preprocess, routing=LanguageRouting(mono))
    batch = collator(_rows())
    assert "language" not in batch
    ids = [query.lang_id for query in batch["query"]]
    assert ids == sorted(ids)  # grouped by adapter
    for query, passage, label in zip(batch["query"], batch["passage"], batch["label"].tolist()):
        row = int(label)  # the label is the dataset row number
        assert (str(query), str(passage)) == (ROWS[row]["query"], ROWS[row]["passage"])
        assert query.lang_id == passage.lang_id == mono.languages.index(EXPECTED_CODES[row])
    english = [int(label) for query, label in zip(batch["query"], batch["label"].tolist()) if query.lang_id == 0]
    assert english == [0, 4]  # the order inside a language is kept (stable sort)


def test_training_language_auto_and_no_grouping(mono) -> None:
    rows = [{"query": "q", "passage": "le thé vert est une boisson faite de feuilles", "language": "auto"},
            {"query": "q", "passage": "tea", "language": ""}, {"query": "q", "passage": "tee"}]
    routed = route_rows(rows, LanguageRouting(mono, training_language="German", group_by_language=False))
    assert [row["passage"].lang_id for row in routed] == [mono.languages.index(code) for code in ("fr_XX", "de_DE", "de_DE")]
    assert [str(row["passage"]) for row in routed] == ["le thé vert est une boisson faite de feuilles", "tea", "tee"]
    assert all(isinstance(row["query"], RoutedText) for row in routed)
    labelled = route_rows([{"label": 1.0, "language": "en", "query": "q", "passage": "p"}], LanguageRouting(mono))
    assert list(labelled[0]) == ["label", "query", "passage"]  # column order kept: losses read columns by position


def test_list_columns_and_multi_vector_lang_ids(colbert) -> None:
    rows = [{"query": r["query"], "docs": [r["passage"], "x"], "language": r["language"]} for r in ROWS]
    routed = route_rows(rows, LanguageRouting(colbert))
    assert all(isinstance(doc, RoutedText) and doc.lang_id == row["query"].lang_id for row in routed for doc in row["docs"])
    triples = [{"query": r["query"], "positive": r["passage"], "language": r["language"]} for r in ROWS]
    batch = ColBERTXMDataCollator(preprocess_fn=colbert.preprocess, routing=LanguageRouting(colbert))(triples)
    expected = sorted(colbert.languages.index(code) for code in EXPECTED_CODES)
    assert batch["query_lang_ids"].tolist() == batch["positive_lang_ids"].tolist() == expected
    assert batch["query_task"] == "query" and batch["positive_task"] == "document"


def test_errors_name_the_row(mono) -> None:
    rows = _rows()
    rows[2]["language"] = "klingon"
    with pytest.raises(UnknownLanguageError, match=r"row 2 of the batch: first text 'was ist grüner tee'"):
        route_rows(rows, LanguageRouting(mono))
    rows[2]["language"] = 7
    with pytest.raises(TypeError, match="Row 2 of the batch: 'language' is int"):
        route_rows(rows, LanguageRouting(mono))
    with pytest.raises(TypeError, match="column 'passage' holds int"):
        route_rows([{"query": "q", "passage": 3, "language": "en"}], LanguageRouting(mono))
    mono.model.config.default_language = None
    with pytest.raises(MissingLanguageError, match="Row 4 of the batch .* training_language='en'"):
        route_rows(_rows(), LanguageRouting(mono))
    assert route_rows([], LanguageRouting(mono)) == []
    assert torch.is_tensor(MonoXMDataCollator(preprocess_fn=mono.preprocess)(_rows())["label"])  # no routing: stock
