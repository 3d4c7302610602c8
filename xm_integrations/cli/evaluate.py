"""``xm-integrations evaluate``: MRR@10, nDCG@10, Recall@100/1000 of ColBERT-XM or Mono-XM on a local dataset.

See :mod:`xm_integrations.evaluation.runners` for the dataset layouts and the metric conventions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xm_integrations.cli._common import add_command, positive_int, quiet_progress

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "evaluate",
        help="evaluate ColBERT-XM (full ranking) or Mono-XM (reranking) on a local BEIR / ir_datasets dataset",
        description=(
            "Compute MRR@10, nDCG@10, Recall@100 and Recall@1000 (trec_eval conventions) per language and "
            "averaged over languages. DATASET is a folder in BEIR layout (corpus.jsonl, queries.jsonl, "
            "qrels/SPLIT.tsv) or ir_datasets export layout (docs.jsonl|tsv, queries.jsonl|tsv, qrels), or a folder "
            "of such folders named by language (fr/, de/, zh-CN/ ...). ColBERT-XM ranks the whole corpus; Mono-XM "
            "reranks --candidates. The JSON written by --output feeds `xm-integrations push --eval-results`."
        ),
        examples=(
            "xm-integrations evaluate ./colbert-xm-st ./mmarco-small --output results.json --dataset-name mMARCO",
            "xm-integrations evaluate ./mono-xm-fr ./mmarco-small --candidates bm25.trec --output results.json",
        ),
        run=run,
    )
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("dataset", help="dataset folder, or folder of per-language dataset folders")
    parser.add_argument("--task", choices=("retrieval", "reranking"),
                        help="default: retrieval for ColBERT-XM, reranking for Mono-XM")
    parser.add_argument("--candidates", help="reranking: candidates file (TREC run or 'qid docid' lines); with "
                                             "per-language folders, its name inside each folder")
    parser.add_argument("-l", "--language", help="language of every dataset, or 'auto' (default: each language "
                                                 "folder's name, else the model's default)")
    parser.add_argument("--split", default="test", help="qrels split in the BEIR layout (default: test)")
    parser.add_argument("--top-k", type=positive_int, default=1000, help="retrieval depth (default: 1000)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="the most texts or pairs per forward pass (default: as many as the token budget allows)")
    parser.add_argument("--dataset-name", help="readable dataset name for the results and the card")
    parser.add_argument("--dataset-id", help="the dataset's Hub id (e.g. unicamp-dl/mmarco) for the card")
    parser.add_argument("-o", "--output", help="write the results JSON here (default: stdout)")
    parser.add_argument("--save-runs", metavar="DIR", help="also write each dataset's run in TREC format into DIR")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; returns the exit code."""
    from xm_integrations.engine import UnsetBatchSize
    from xm_integrations.evaluation import evaluate_model, write_trec_run

    if args.no_progress:
        quiet_progress()
    runs: dict = {}
    batch_size = UnsetBatchSize(32) if args.batch_size is None else args.batch_size
    document = evaluate_model(
        args.model, args.dataset, task=args.task, candidates=args.candidates, language=args.language,
        split=args.split, batch_size=batch_size, top_k=args.top_k, dataset_name=args.dataset_name,
        dataset_id=args.dataset_id, show_progress_bar=not args.no_progress, runs=runs,
    )
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.save_runs:
        Path(args.save_runs).mkdir(parents=True, exist_ok=True)
        for name, scores in runs.items():
            write_trec_run(scores, Path(args.save_runs) / f"{name}.trec")
    metrics = document["metrics"]
    print(f"{'':12}" + "".join(f"{m:>13}" for m in metrics), file=sys.stderr)
    rows = [*document["per_language"].items(), ("average", document["average"])]
    for name, values in rows:
        print(f"{name:12}" + "".join(f"{values[m]:13.4f}" for m in metrics), file=sys.stderr)
    return 0
