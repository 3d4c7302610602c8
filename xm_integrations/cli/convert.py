"""``xm-integrations convert``: a ColBERT-XM (colbert-ai) or Mono-XM checkpoint into a folder stock libraries load.

See :mod:`xm_integrations.hub.convert`. Heavy imports happen only when the command runs.
"""

from __future__ import annotations

import argparse

from xm_integrations.cli._common import add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``convert`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "convert",
        help="convert a ColBERT-XM / Mono-XM checkpoint into a folder stock sentence-transformers loads",
        description=(
            "Convert a colbert-ai HF_ColBERT checkpoint (ColBERT-XM) into the sentence-transformers multi-vector "
            "folder that ColBERTXM saves (every adapter, lengths, markers and skiplist kept), or re-save a Mono-XM "
            "checkpoint, in both cases with a default language so that stock loaders work. The result is loaded "
            "with the stock library and compared with xm_integrations on the source in several languages; on a "
            "difference nothing is written."
        ),
        examples=(
            "xm-integrations convert antoinelouis/colbert-xm ./colbert-xm-st --language fr",
            "xm-integrations convert ./mono-xm ./mono-xm-de --language German",
        ),
        run=run,
    )
    parser.add_argument("source", help="checkpoint folder or Hub repo id")
    parser.add_argument("output_dir", help="folder to write (must not exist or be empty, unless --overwrite)")
    parser.add_argument("-l", "--language",
                        help="default adapter to save, any spelling ('fr', 'fr-FR', 'French'); required when the "
                             "source has none")
    parser.add_argument("--revision", help="Hub revision of SOURCE (a repo id)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``convert``; returns the exit code."""
    from xm_integrations.hub.convert import convert_model

    result = convert_model(args.source, args.output_dir, language=args.language, revision=args.revision,
                           overwrite=args.overwrite)
    print(result.report.describe())
    print(f"Converted {result.source} -> {result.output_dir} ({result.kind.value}, default language "
          f"{result.default_language}).")
    return 0
