"""Small multilingual retrieval test collections on disk, in the BEIR layout the evaluation code reads.

Built from :data:`~xm_integrations.testing.corpus.SAMPLE_PASSAGES` (the same topics in every
language), for tests, the fine-tuning example and the demo: one folder per language, each with a
BM25-like candidates file (``bm25.trec``, every passage in corpus order) for reranking.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from xm_integrations.testing.corpus import SAMPLE_PASSAGES

__all__ = ["SAMPLE_TOPICS", "write_beir", "write_sample_datasets"]

#: Queries of the sample collections by adapter code: ``(query, index of its relevant passage)``.
SAMPLE_TOPICS: dict[str, list[tuple[str, int]]] = {
    "fr_XX": [("Quand la tour Eiffel a-t-elle été construite ?", 0), ("Combien de caféine dans le thé vert ?", 3),
              ("La plus grande forêt tropicale", 2)],
    "de_DE": [("Wann wurde der Eiffelturm gebaut?", 0), ("Was ist Photosynthese?", 1)],
}


def write_beir(folder: Path, corpus: Mapping[str, tuple[str, str]], queries: Mapping[str, str],
               qrels: Sequence[tuple[str, str, int]]) -> Path:
    """Write ``corpus.jsonl`` (``{doc_id: (title, text)}``), ``queries.jsonl`` and ``qrels/test.tsv`` into a new ``folder``."""
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n"
                for doc_id, (title, text) in corpus.items()), encoding="utf-8")
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n" for qid, text in queries.items()),
        encoding="utf-8")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels), encoding="utf-8")
    return folder


def write_sample_datasets(root: str | Path, topics: Mapping[str, list[tuple[str, int]]] = SAMPLE_TOPICS) -> Path:
    """One BEIR folder per language under ``root`` (named ``fr``, ``de``...), with a ``bm25.trec`` candidates file each."""
    root = Path(root)
    for code, queries in topics.items():
        folder = write_beir(root / code.split("_")[0],
                            {f"{code}-{i}": ("", text) for i, text in enumerate(SAMPLE_PASSAGES[code])},
                            {f"q{i}": text for i, (text, _) in enumerate(queries)},
                            [(f"q{i}", f"{code}-{doc}", 1) for i, (_, doc) in enumerate(queries)])
        (folder / "bm25.trec").write_text("".join(
            f"q{i} Q0 {code}-{d} {d + 1} {10 - d} bm25\n" for i in range(len(queries))
            for d in range(len(SAMPLE_PASSAGES[code]))))
    return root
