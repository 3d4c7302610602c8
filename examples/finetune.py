"""Fine-tune ColBERT-XM or Mono-XM the X-MOD way, then evaluate per language (zero-shot transfer).

The recipe of the X-MOD paper and of the xm-retrievers code that trained both models: the English
adapter active, the embeddings and every language adapter frozen, the shared weights trained on
English data; at inference another adapter is swapped in for each language. ColBERT-XM's objective
is colbert-ai's (``ColBERTXMLoss``); Mono-XM's is binary cross-entropy (the stock default).

Without arguments it runs on this machine's CPU in well under a minute: the bundled tiny random
checkpoints (no download), a toy training set in English, Spanish and Portuguese (a ``language``
column: each row through its own adapter), toy French and German test collections (languages it
did not train on: zero-shot transfer).
The numbers mean nothing there (random weights); the path is the point.

With your data it runs the real recipe (a GPU and ``--bf16`` recommended)::

    python examples/finetune.py --kind colbert --model antoinelouis/colbert-xm \\
        --train-data msmarco_triples.jsonl --eval-data mmarco_dev/ --bf16 \\
        --batch-size 32 --max-steps 200000 --learning-rate 3e-6 --output-dir colbert-xm-ft

``--train-data`` is JSON lines: ``query``, ``positive``, ``negative`` (or ``negative_1`` ...) for
ColBERT-XM; ``query``, ``passage``, ``label`` (1/0) for Mono-XM; an optional ``language`` per row
(any code, tag or name, or ``auto``), else ``--training-language``. ``--eval-data`` is a folder of
per-language BEIR folders (``fr/``, ``de/``...: ``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``), as ``xm-integrations evaluate`` reads; for Mono-XM each may hold a
``bm25.trec`` candidates file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The toy training set: queries by language, each with the index of its relevant sample passage
#: (the same topics in every language). French and German are left out: the evaluation watches them.
TOY_QUERIES: dict[str, list[tuple[str, int]]] = {
    "en_XX": [("When was the Eiffel Tower built?", 0), ("How do plants turn sunlight into sugar?", 1),
              ("Which is the largest rainforest on Earth?", 2), ("Does green tea have less caffeine than coffee?", 3)],
    "es_XX": [("¿Cuándo se construyó la Torre Eiffel?", 0), ("¿Qué produce la fotosíntesis?", 1),
              ("¿Cuál es la selva tropical más grande?", 2), ("¿Tiene el té verde menos cafeína que el café?", 3)],
    "pt_XX": [("Quando foi construída a Torre Eiffel?", 0), ("O que a fotossíntese transforma?", 1),
              ("Qual é a maior floresta tropical do mundo?", 2)],
}


def toy_rows(kind: str) -> list[dict[str, Any]]:
    """Rows from the bundled sample passages, with a ``language`` column: triples for ColBERT-XM, labelled pairs for Mono-XM."""
    from xm_integrations.testing.corpus import SAMPLE_PASSAGES

    rows = []
    for language, queries in TOY_QUERIES.items():
        passages = SAMPLE_PASSAGES[language]
        for query, relevant in queries:
            negative = passages[(relevant + 1) % len(passages)]
            if kind == "colbert":
                rows.append({"query": query, "positive": passages[relevant], "negative": negative, "language": language})
            else:
                rows += [{"query": query, "passage": passages[relevant], "label": 1.0, "language": language},
                         {"query": query, "passage": negative, "label": 0.0, "language": language}]
    return rows


def read_rows(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_toy_inputs(kind: str, folder: Path) -> tuple[str, Path]:
    """The tiny checkpoint of ``kind`` and the toy French/German collections, written under ``folder``."""
    from xm_integrations.testing import build_tiny_colbert_xm, build_tiny_mono_xm
    from xm_integrations.testing.datasets import write_sample_datasets

    build = build_tiny_colbert_xm if kind == "colbert" else build_tiny_mono_xm
    model_path = build(folder / f"tiny-{kind}", default_language="en_XX")
    return str(model_path), write_sample_datasets(folder / "eval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("colbert", "mono"), default="colbert", help="ColBERT-XM or Mono-XM")
    parser.add_argument("--model", help="model folder or Hub id (default: the bundled tiny checkpoint)")
    parser.add_argument("--train-data", help="JSON lines (default: a toy en/es/pt set)")
    parser.add_argument("--eval-data", help="folder of per-language BEIR folders (default: toy fr/de)")
    parser.add_argument("--training-language", default="en", help="language of rows without one (default: en)")
    parser.add_argument("--output-dir", help="where the fine-tuned model is saved (default: a temporary folder)")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (stock XMOD crashes there)")
    parser.add_argument("--no-freeze", action="store_true", help="train the embeddings and adapters too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch
    from datasets import Dataset

    from xm_integrations import ColBERTXM, MonoXM
    from xm_integrations.training import ColBERTXMLoss, ColBERTXMTrainer, MonoXMTrainer, language_evaluators

    scratch = Path(tempfile.mkdtemp(prefix="xm-finetune-"))
    model_path, eval_path = args.model, args.eval_data
    if model_path is None or eval_path is None:
        toy_model, toy_eval = build_toy_inputs(args.kind, scratch)
        model_path, eval_path = model_path or toy_model, eval_path or toy_eval
    rows = read_rows(args.train_data) if args.train_data else toy_rows(args.kind)
    model: Any = ColBERTXM(model_path) if args.kind == "colbert" else MonoXM(model_path)
    evaluator = language_evaluators(model, eval_path)
    metric = "maxsim_ndcg@10" if args.kind == "colbert" else "ndcg@10"
    before = evaluator(model)

    if args.kind == "colbert":
        from sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainingArguments as Arguments
    else:
        from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as Arguments
    output_dir = Path(args.output_dir or scratch / "model")
    training_args = Arguments(
        output_dir=str(output_dir / "checkpoints"), max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, bf16=args.bf16, report_to=[], save_strategy="no",
        logging_steps=max(1, args.max_steps // 5), eval_strategy="no", use_cpu=not torch.cuda.is_available(),
    )
    options: dict[str, Any] = {"model": model, "args": training_args, "train_dataset": Dataset.from_list(rows),
                               "training_language": args.training_language, "freeze": not args.no_freeze}
    if args.kind == "colbert":
        trainer: Any = ColBERTXMTrainer(loss=ColBERTXMLoss(model), **options)
    else:
        trainer = MonoXMTrainer(**options)
    if trainer.freeze_summary is not None:
        print(f"Frozen embeddings and language adapters: {trainer.freeze_summary}")
    start = time.perf_counter()
    trainer.train()
    print(f"Trained {args.max_steps} steps in {time.perf_counter() - start:.1f} s")
    after = evaluator(model)
    model.save(str(output_dir))
    print(f"Saved to {output_dir}")

    table: dict[str, dict[str, float]] = {}
    print(f"\n{'language':10} {metric + ' before':>24} {metric + ' after':>24}")
    for key in sorted(before):
        if key.endswith("_" + metric):
            language = key[: -len(metric) - 1]
            table[language] = {"before": before[key], "after": after[key]}
            print(f"{language:10} {before[key]:24.4f} {after[key]:24.4f}")
    return table


if __name__ == "__main__":
    main()
