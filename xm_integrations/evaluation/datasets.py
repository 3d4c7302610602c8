"""Evaluation datasets from a local folder: BEIR layout, ``ir_datasets export`` layout, or one sub-folder per language.

BEIR: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``. ``ir_datasets export``:
``docs.jsonl``/``docs.tsv``, ``queries.jsonl``/``queries.tsv``, ``qrels`` in TREC format. A folder
whose sub-folders are such datasets is read as one dataset per language, named by the sub-folder
(``fr``, ``de-DE``, ``zh_CN``...). A file that is not in a layout read here raises
:class:`~xm_integrations.errors.DatasetFormatError` saying which files are expected.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from xm_integrations.errors import DatasetFormatError
from xm_integrations.evaluation.metrics import Qrels

__all__ = ["RetrievalDataset", "load_candidates", "load_datasets"]

# Raw tab-separated files can hold passages longer than csv's default field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class RetrievalDataset:
    """One retrieval test collection (in one language).

    Attributes:
        name: The folder name, or the language sub-folder's name.
        path: Where it was read from.
        corpus: ``{doc_id: text}``; a BEIR title is prepended to the text.
        queries: ``{query_id: text}``, restricted to the judged queries.
        qrels: ``{query_id: {doc_id: grade}}``.
        language: The language the folder is named after (``None`` for a single-language dataset).
    """

    name: str
    path: Path
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels
    language: str | None = None
    layout: str = field(default="beir")


def _read_jsonl(path: Path, id_keys: Sequence[str], desc: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(tqdm(handle, desc=desc, unit=" lines", leave=False), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{path}:{line_number}: not JSON ({error.msg}); expected one object per line.") from None
            key = next((k for k in id_keys if k in row), None)
            if key is None or "text" not in row:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected fields {' or '.join(repr(k) for k in id_keys)} and 'text', "
                    f"got {sorted(row)}."
                )
            title = (row.get("title") or "").strip()
            texts[str(row[key])] = f"{title} {row['text']}".strip() if title else row["text"]
    return texts


def _read_tsv_texts(path: Path, desc: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, row in enumerate(tqdm(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE),
                                               desc=desc, unit=" lines", leave=False), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise DatasetFormatError(f"{path}:{line_number}: expected 'id<TAB>text', got {row!r}.")
            if line_number == 1 and row[0] in ("doc_id", "query_id", "id", "_id"):
                continue
            texts[row[0]] = " ".join(part for part in row[1:] if part) if len(row) > 2 else row[1]
    return texts


def _read_qrels(path: Path) -> Qrels:
    """BEIR ``query-id<TAB>corpus-id<TAB>score`` (header optional) or TREC ``qid iter docid rel``."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                query_id, doc_id, grade = parts
            elif len(parts) == 4:
                query_id, _, doc_id, grade = parts
            else:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected 'query-id corpus-id score' (BEIR) or 'query-id 0 doc-id "
                    f"relevance' (TREC), got {len(parts)} fields."
                )
            try:
                value = int(float(grade))
            except ValueError:
                if line_number == 1:  # BEIR header: query-id corpus-id score
                    continue
                raise DatasetFormatError(f"{path}:{line_number}: relevance {grade!r} is not a number.") from None
            qrels.setdefault(query_id, {})[doc_id] = value
    return qrels


def _first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _is_dataset_folder(folder: Path) -> bool:
    return _first_existing(folder, ("corpus.jsonl", "docs.jsonl", "docs.tsv", "corpus.tsv")) is not None


def _load_one(folder: Path, split: str, name: str, language: str | None) -> RetrievalDataset:
    if (folder / "corpus.jsonl").is_file():
        layout = "beir"
        corpus = _read_jsonl(folder / "corpus.jsonl", ("_id", "doc_id", "id"), f"{name}: corpus")
    else:
        layout = "ir_datasets"
        docs = _first_existing(folder, ("docs.jsonl", "docs.tsv", "corpus.tsv"))
        if docs is None:
            raise DatasetFormatError(_layout_help(folder))
        corpus = (_read_jsonl(docs, ("doc_id", "_id", "id"), f"{name}: corpus") if docs.suffix == ".jsonl"
                  else _read_tsv_texts(docs, f"{name}: corpus"))
    queries_file = _first_existing(folder, ("queries.jsonl", "queries.tsv"))
    qrels_file = _first_existing(
        folder, (f"qrels/{split}.tsv", f"qrels/{split}.trec", f"qrels.{split}", f"qrels.{split}.tsv", "qrels",
                 "qrels.trec", "qrels.txt", "qrels.tsv")
    )
    if queries_file is None or qrels_file is None:
        raise DatasetFormatError(_layout_help(folder, split))
    queries = (_read_jsonl(queries_file, ("_id", "query_id", "id"), f"{name}: queries")
               if queries_file.suffix == ".jsonl" else _read_tsv_texts(queries_file, f"{name}: queries"))
    qrels = _read_qrels(qrels_file)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise DatasetFormatError(
            f"{qrels_file}: {len(unknown)} judged queries are not in {queries_file.name} (e.g. {unknown[:3]}); "
            "the qrels and queries files do not belong together."
        )
    return RetrievalDataset(name=name, path=folder, corpus=corpus,
                            queries={qid: queries[qid] for qid in qrels}, qrels=qrels, language=language,
                            layout=layout)


def _layout_help(folder: Path, split: str = "test") -> str:
    return (
        f"{folder} is not a dataset this tool reads. Expected either the BEIR layout (corpus.jsonl, "
        f"queries.jsonl, qrels/{split}.tsv) or the ir_datasets export layout (docs.jsonl or docs.tsv, queries.jsonl "
        "or queries.tsv, qrels in TREC format), or a folder of such datasets, one per language."
    )


def load_datasets(path: str | Path, split: str = "test") -> list[RetrievalDataset]:
    """Read a dataset folder, or a folder of per-language dataset folders (named by language).

    Args:
        path: The folder.
        split: Which ``qrels/<split>.tsv`` to read in the BEIR layout.

    Returns:
        One dataset per language sub-folder (sorted by name), or one dataset with ``language=None``.

    Raises:
        DatasetFormatError: the folder is in neither layout, or its files do not match.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"{path} is not a folder; pass the dataset's folder.")
    if _is_dataset_folder(path):
        return [_load_one(path, split, path.name, None)]
    subfolders = sorted(child for child in path.iterdir() if child.is_dir() and _is_dataset_folder(child))
    if not subfolders:
        raise DatasetFormatError(_layout_help(path, split))
    return [_load_one(child, split, child.name, child.name) for child in subfolders]


def load_candidates(path: str | Path) -> dict[str, list[str]]:
    """Candidate documents per query for reranking: a TREC run (``qid Q0 docid rank score tag``) or ``qid docid`` lines.

    A TREC run keeps its order by rank; a two-column file keeps the file's order. Duplicates are dropped.
    """
    path = Path(path)
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 6:
                query_id, _, doc_id, rank = parts[:4]
                try:
                    order = float(rank)
                except ValueError:
                    raise DatasetFormatError(f"{path}:{line_number}: rank {rank!r} is not a number.") from None
            elif len(parts) == 2:
                (query_id, doc_id), order = parts, float(line_number)
            else:
                raise DatasetFormatError(
                    f"{path}:{line_number}: expected a TREC run line 'qid Q0 docid rank score tag' or 'qid docid', "
                    f"got {len(parts)} fields."
                )
            rows.setdefault(query_id, []).append((order, line_number, doc_id))
    return {query_id: list(dict.fromkeys(doc for _, _, doc in sorted(entries))) for query_id, entries in rows.items()}
