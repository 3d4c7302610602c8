"""``xm-integrations index``: build or extend a persistent ColBERT-XM index (LanceDB folder) from a corpus file.

The corpus is read as ``search`` reads it (one passage per line, or JSON lines with ``text`` and
optional ``id`` and ``language``; every other field is kept as metadata and can be filtered on
with ``search --index DIR --where``), but line by line: memory follows ``--chunk-size``, not the
file. Each chunk is encoded and committed on its own, so an interrupted run (Ctrl-C, a killed
process, a bad line) leaves every chunk before it in the index, and running the same command again
skips the ids already there and finishes the job. Passages without an id get their 0-based
position in the file (blank lines not counted), so keep the file as it is between runs.

With ``--ray [ADDRESS]`` the passages are encoded by actors on a Ray cluster (one per GPU, else
one per node) and written here: the file is read on this machine, so the nodes need not see it,
but they must be able to load the model (a Hub id or a folder on shared storage).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xm_integrations.cli._common import (
    InputError,
    add_command,
    add_input_options,
    add_run_options,
    check_device,
    missing_language_message,
    positive_float,
    positive_int,
    quiet_progress,
    stream_passages,
)
from xm_integrations.cli.search import DEFAULT_MODEL

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``index`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "index",
        help="build or extend a ColBERT-XM index on disk (LanceDB) from a corpus file, resumably",
        description=(
            "Encode a corpus with ColBERT-XM and write it into the index folder --index (created if needed), one "
            "commit per --chunk-size passages. Passages are one per line or JSON lines {\"id\": ..., \"text\": ..., "
            "\"language\": ..., other fields: metadata}. Re-running skips ids already indexed (--on-existing), so an "
            "interrupted build resumes. Search it with: xm-integrations search --index DIR -q QUERY."
        ),
        examples=(
            "xm-integrations index corpus.jsonl --index wiki-index --language auto",
            "xm-integrations index updates.jsonl --index wiki-index --on-existing upsert",
            "python -m xm_integrations.testing build /tmp/xm-tiny    # offline tiny checkpoints, random weights",
            "xm-integrations index xm_integrations/data/demo_passages.jsonl --index /tmp/xm-index \\",
            "    --model /tmp/xm-tiny/colbert-xm --language auto",
        ),
        run=run,
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="the index folder (created if it does not exist)")
    add_input_options(parser, passages="corpus", default_model=DEFAULT_MODEL, model_kind="a ColBERT-XM checkpoint",
                      model_note="; for an existing index, the model it was built with")
    parser.set_defaults(model=None)  # resolved in run()
    parser.add_argument("--on-existing", choices=("skip", "upsert", "error"), default="skip",
                        help="ids already in the index: keep them and skip the passage (default; makes re-runs "
                             "resume), replace them, or stop with an error")
    parser.add_argument("--chunk-size", type=positive_int, default=1000,
                        help="passages encoded and committed at a time; bounds memory (default: 1000)")
    parser.add_argument("--vector-dtype", choices=("float16", "float32"), default=None,
                        help="column type of the stored vectors of a new index (default float16; float32 doubles the "
                             "re-scoring store and trains the IVF-PQ index ~6x faster, worth it from about 100k "
                             "passages); an existing index keeps its own")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="encode on a Ray cluster (needs the ray extra): ADDRESS such as ray://head:10001 or "
                             "auto; without it, RAY_ADDRESS or a local cluster")
    parser.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                        help="encoder actors with --ray (default: one per GPU in the cluster, else one per node)")
    parser.add_argument("--ray-gpus-per-actor", type=positive_float, default=None, metavar="F",
                        help="GPUs per encoder actor with --ray (default: 1 where the cluster has GPUs); 0.33 puts "
                             "three actors on each GPU, which on an H200 encoded as fast as one process, 2x one actor")
    parser.add_argument("--ray-cpus-per-actor", type=positive_float, default=None, metavar="F",
                        help="CPUs per encoder actor with --ray, also its torch threads (default: 1); leave some "
                             "for reading the corpus (measured: 3 actors x 4 CPUs per GPU on a 16-core host)")
    add_run_options(parser, batch_unit="texts", progress_help="no progress bar", output=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``index``; prints what was added, updated and skipped on stderr."""
    passages, source = stream_passages(args.corpus, args.input_format)
    check_device(args.device)
    if args.no_progress:
        quiet_progress()

    from xm_integrations.engine import FastInferenceConfig
    from xm_integrations.errors import MissingLanguageError
    from xm_integrations.index import LanceDBIndex
    from xm_integrations.models.colbert_xm.model import ColBERTXM

    recorded = LanceDBIndex(args.index).record  # also refuses a foreign folder before the model loads
    model_name = args.model or (recorded.name_or_path if recorded is not None else None) or DEFAULT_MODEL
    config = FastInferenceConfig(max_batch_tokens=args.max_batch_tokens)
    model = ColBERTXM(model_name, device=args.device, fast_inference=config)
    index = LanceDBIndex(args.index, model=model, vector_dtype=args.vector_dtype)
    before = index.count()
    records = (passage.as_record() for passage in passages)
    try:
        if args.ray is not None:
            result = _index_with_ray(index, records, args)
        else:
            result = index.add_documents(records, language=args.language, on_existing=args.on_existing,
                                         chunk_size=args.chunk_size, batch_size=args.batch_size,
                                         show_progress_bar=not args.no_progress)
    except MissingLanguageError:
        raise MissingLanguageError(missing_language_message(model_name, "each passage")) from None
    except InputError as error:
        raise InputError(f"{error} The index {args.index} keeps the {index.count() - before} passage(s) committed "
                         f"before it; fix the input and re-run the same command to finish (indexed ids are skipped)."
                         ) from None
    if result.added + result.updated + result.skipped + len(getattr(result, "failed_ids", ())) == 0:
        raise InputError(f"the corpus {source} holds no passage (blank lines are skipped); give at least one.")
    print(f"{args.index}: {result.added} added, {result.updated} updated, {result.skipped} skipped; "
          f"{index.count()} passages in the index.", file=sys.stderr)
    failed = getattr(result, "failed", [])
    if failed:
        ids = [doc_id for batch in failed for doc_id in batch.ids]
        raise InputError(f"{len(ids)} passage(s) could not be encoded ({failed[0].error}; ids {', '.join(ids[:3])}"
                         f"{', ...' if len(ids) > 3 else ''}); fix them and re-run the same command (indexed ids are "
                         f"skipped).")
    return 0


def _index_with_ray(index: Any, records: Any, args: argparse.Namespace) -> Any:
    from xm_integrations.distributed import index_with_ray

    options = {"num_actors": args.ray_actors} if args.ray_actors else {}
    if args.ray_gpus_per_actor:
        options["num_gpus"] = args.ray_gpus_per_actor
    if args.ray_cpus_per_actor:
        options["num_cpus"] = args.ray_cpus_per_actor
    if args.batch_size is not None:
        options["encode_batch_size"] = args.batch_size
    return index_with_ray(index, records, language=args.language, on_existing=args.on_existing,
                          address=args.ray or None, chunk_size=args.chunk_size, show_progress_bar=not args.no_progress,
                          **options)
