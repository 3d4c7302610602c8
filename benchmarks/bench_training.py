"""Training through the real sentence-transformers trainers: steps per second and peak memory, ours against stock.

Model: the random xmod-base-size checkpoints of ``bench_common`` (81 adapters, vocabulary 250,002),
Mono-XM layout (``XmodForSequenceClassification``, one label) and ColBERT-XM layout (colbert-ai
``HF_ColBERT``, dim 128). Data: ``--batch-size`` rows per step; Mono-XM rows are (query, passage,
label), ColBERT-XM rows (query, positive, negative), queries 16 tokens and passages 128 tokens, the
same in every row: every step has the same shapes, so the ``--warmup`` untimed steps leave nothing
to first-run costs (with mixed lengths, each new padded shape paid first-use costs inside the timed
steps: ``results/training_h200_variable_lengths.json`` has such a run, where the first bf16
variant ran at half the speed of the same configuration measured later). Then ``--steps`` timed
steps, every variant in this process, one after another (memory freed and the peak counter reset
between them).

Variants (``workload`` = model, languages per batch):

* ``stock fp32``: ``CrossEncoder`` / ``MultiVectorEncoder`` with the stock trainer, default
  language English, nothing frozen: what a user can run today (it cannot route rows by language).
* ``stock bf16``: the same with ``bf16=True``: transformers' adapter dispatch crashes
  (``Index put requires the source and destination dtypes match``); the row records the error.
* ``ours bf16 frozen`` / ``ours bf16 unfrozen`` / ``ours fp32 frozen``: ``MonoXMTrainer`` /
  ``ColBERTXMTrainer``, a ``language`` column per row.
* 5 languages: rows drawn from five languages; ``grouped`` (the default collator) and
  ``interleaved`` (``group_by_language=False``).
* ``again``: the first variant of ours once more at the end: the spread between the two is the
  measurement's noise (order effects included).
* ColBERT-XM uses ``MultiVectorMultipleNegativesRankingLoss`` for stock and ours (same loss), plus
  one row with ``ColBERTXMLoss`` (colbert-ai's objective).

    python benchmarks/bench_training.py --json benchmarks/results/training_h200.json   # GPU
    python benchmarks/bench_training.py --small                                           # CPU check
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
logging.getLogger("transformers").setLevel(logging.ERROR)


def _texts(count: int, rng: np.random.Generator, length: int, vocab_size: int) -> list[str]:
    return [bc.random_text(length, rng, vocab_size) for _ in range(count)]


def _dataset(kind: str, rows: int, languages: tuple[str, ...], *, seed: int, vocab_size: int, small: bool):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    query, passage = (8, 32) if small else (16, 128)
    columns: dict[str, Any] = {"query": _texts(rows, rng, query, vocab_size)}
    if kind == "mono":
        columns["passage"] = _texts(rows, rng, passage, vocab_size)
        columns["label"] = rng.integers(0, 2, size=rows).astype(float).tolist()
    else:
        columns["positive"] = _texts(rows, rng, passage, vocab_size)
        columns["negative"] = _texts(rows, rng, passage, vocab_size)
    columns["language"] = [languages[i] for i in rng.integers(0, len(languages), size=rows)]
    return Dataset.from_dict(columns)


class _StepTimer:
    """A trainer callback: the wall time of the steps after the warm-up ones (synchronised on CUDA)."""

    def __init__(self, warmup: int, device: str) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    bc.sync(device)
                    timer.start = time.perf_counter()
                    if device.startswith("cuda"):
                        torch.cuda.reset_peak_memory_stats()

            def on_train_end(self, args, state, control, **kwargs):
                bc.sync(device)
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = float("nan")


def _run_variant(kind: str, variant: str, path: Path, data, args, device: str) -> dict[str, Any]:
    from sentence_transformers import CrossEncoder, MultiVectorEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
    )
    from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss

    from xm_integrations import ColBERTXM, MonoXM
    from xm_integrations.training import ColBERTXMLoss, ColBERTXMTrainer, MonoXMTrainer

    stock = variant.startswith("stock")
    bf16 = "bf16" in variant
    frozen = "unfrozen" not in variant and not stock
    timer = _StepTimer(args.warmup, device)
    args_class = CrossEncoderTrainingArguments if kind == "mono" else MultiVectorEncoderTrainingArguments
    training_args = args_class(
        output_dir=str(bc.work_dir(args) / "train-out"), per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, bf16=bf16, report_to=[], save_strategy="no", logging_steps=10**6,
        use_cpu=device == "cpu", dataloader_drop_last=True, disable_tqdm=True, learning_rate=1e-5, seed=0,
    )
    common = {"args": training_args, "callbacks": [timer.callback]}
    if stock:
        data = data.remove_columns("language")
        if kind == "mono":
            model = CrossEncoder(str(path), device=device)
            trainer = CrossEncoderTrainer(model=model, train_dataset=data, **common)
        else:
            model = MultiVectorEncoder(str(path), device=device)
            trainer = MultiVectorEncoderTrainer(model=model, train_dataset=data,
                                                loss=MultiVectorMultipleNegativesRankingLoss(model), **common)
    else:
        options = {"freeze": frozen, "group_by_language": "interleaved" not in variant, **common}
        if kind == "mono":
            model = MonoXM(str(path), device=device, language="en")
            trainer = MonoXMTrainer(model=model, train_dataset=data, **options)
        else:
            model = ColBERTXM(str(path), device=device, language="en")
            loss = ColBERTXMLoss(model) if "colbert-ai loss" in variant else MultiVectorMultipleNegativesRankingLoss(model)
            trainer = ColBERTXMTrainer(model=model, train_dataset=data, loss=loss, **options)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row: dict[str, Any] = {"trainable_params": trainable}
    try:
        result = trainer.train()
    except RuntimeError as error:
        row["error"] = str(error).splitlines()[0][:120]
    else:
        seconds = timer.end - timer.start
        row.update(steps_per_s=args.steps / seconds, items_per_s=args.steps * args.batch_size / seconds,
                   ms_per_step=1000 * seconds / args.steps, training_loss=result.training_loss)
        if device.startswith("cuda"):
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del trainer, model
    bc.free_memory()
    return row


MONO_VARIANTS = [
    ("stock fp32", 1), ("stock bf16", 1), ("ours fp32 frozen", 1), ("ours bf16 frozen", 1),
    ("ours bf16 unfrozen", 1), ("ours bf16 frozen grouped", 5), ("ours bf16 frozen interleaved", 5),
    ("ours bf16 frozen, again", 1),
]
COLBERT_VARIANTS = [
    ("stock fp32", 1), ("stock bf16", 1), ("ours bf16 frozen", 1), ("ours bf16 unfrozen", 1),
    ("ours bf16 frozen grouped", 5), ("ours bf16 frozen colbert-ai loss", 1), ("ours bf16 frozen, again", 1),
]


def run_benchmark(args: argparse.Namespace) -> list[dict]:
    device = bc.resolve_device(args)
    spec = bc.resolve_spec(args)
    recorder = bc.Recorder(args, "training", device, {"model": spec.name, "batch_size": args.batch_size,
                                                       "steps": args.steps, "warmup": args.warmup})
    root = bc.work_dir(args)
    paths = {"mono": bc.build_mono_xm_checkpoint(root / f"mono-{spec.hidden_size}", spec),
             "colbert": bc.build_colbert_xm_checkpoint(root / f"colbert-{spec.hidden_size}", spec)}
    rows_needed = args.batch_size * (args.warmup + args.steps)
    for kind, variants in (("mono", MONO_VARIANTS), ("colbert", COLBERT_VARIANTS)):
        for variant, language_count in variants:
            name = f"{'Mono-XM' if kind == 'mono' else 'ColBERT-XM'}: {variant}"
            if not bc.wanted(args, name):
                continue
            data = _dataset(kind, rows_needed, bc.FIVE_LANGUAGES[:language_count], seed=0,
                            vocab_size=spec.vocab_size, small=args.small)
            row = _run_variant(kind, variant, paths[kind], data, args, device)
            recorder.add(workload=f"{kind}, {language_count} lang/batch", variant=variant, **row)
    _add_ratios(recorder.rows)
    recorder.flush()
    return recorder.rows


def _add_ratios(rows: list[dict]) -> None:
    """``x stock fp32``: steps/s over the stock fp32 row of the same model (the one stock configuration that trains)."""
    reference = {row["workload"].split(",")[0]: row["steps_per_s"] for row in rows
                 if row["variant"] == "stock fp32" and row.get("steps_per_s")}
    for row in rows:
        base = reference.get(row["workload"].split(",")[0])
        if base and row.get("steps_per_s"):
            row["x_stock_fp32"] = row["steps_per_s"] / base


COLUMNS = (
    ("workload", "workload", "{}"), ("variant", "variant", "{}"), ("steps_per_s", "steps/s", "{:.2f}"),
    ("ms_per_step", "ms/step", "{:.0f}"), ("x_stock_fp32", "x stock fp32", "{:.2f}"),
    ("peak_mem_gib", "peak GiB", "{:.1f}"), ("trainable_params", "trainable", "{:,}"), ("error", "error", "{}"),
)


def main() -> None:
    parser = bc.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default 32; 8 with --small)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 20; 3 with --small)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    args = parser.parse_args()
    args.batch_size = args.batch_size or (8 if args.small else 32)
    args.steps = args.steps or (3 if args.small else 20)
    if args.small:
        args.warmup = min(args.warmup, 2)
    rows = run_benchmark(args)
    print()
    print(bc.format_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
