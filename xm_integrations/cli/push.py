"""``xm-integrations push``: validate a model folder, render its card, upload both to the Hub in one commit.

See :mod:`xm_integrations.hub.upload`. The token is never a command-line argument (it would end up
in shell history and process listings): it comes from ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import argparse

from xm_integrations.cli._common import add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``push`` on the top-level parser."""
    parser = add_command(
        subparsers,
        "push",
        help="validate a model folder, render its model card and upload it to the Hugging Face Hub",
        description=(
            "Validate MODEL_DIR (stock sentence-transformers / FlagEmbedding / transformers against xm_integrations "
            "on multilingual inputs; a mismatch uploads nothing), render its model card, and upload the folder with "
            "the card to REPO_ID in one commit. The token comes from HF_TOKEN or `hf auth login`, the Hub's address "
            "from HF_ENDPOINT. Re-running the same upload changes nothing."
        ),
        examples=(
            "xm-integrations push ./colbert-xm-st me/colbert-xm-st --dry-run /tmp/preview",
            "xm-integrations push ./mono-xm-fr me/mono-xm-fr --private --eval-results results/mmarco.json",
        ),
        run=run,
    )
    parser.add_argument("model_dir", help="the model folder (as `xm-integrations convert` or save_pretrained wrote it)")
    parser.add_argument("repo_id", help="target repo, namespace/name")
    parser.add_argument("--dry-run", metavar="OUT_DIR",
                        help="write exactly what would be uploaded into OUT_DIR (new or empty) and upload nothing")
    parser.add_argument("--private", action="store_true", default=None,
                        help="create the repo as private (an existing repo keeps its visibility)")
    parser.add_argument("--revision", help="branch to commit to, created from main if missing (default: main)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--eval-results", metavar="FILE", action="append", default=[],
                        help="results JSON of `xm-integrations evaluate`, put in the card's model-index (repeatable)")
    parser.add_argument("--license", help="license id for the card (default: mit for ColBERT-XM and Mono-XM)")
    parser.add_argument("--base-model", help="base model repo id for the card (default: facebook/xmod-base)")
    parser.add_argument("--dataset", action="append", default=[], help="training dataset id for the card (repeatable)")
    parser.add_argument("--tag", action="append", default=[], help="extra tag for the card (repeatable)")
    parser.add_argument("--commit-message", help="commit summary")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``push``; returns the exit code."""
    from xm_integrations.hub.cards import CardOptions
    from xm_integrations.hub.upload import format_file_table, load_eval_results, push_to_hub

    options = CardOptions(license=args.license, base_model=args.base_model, datasets=args.dataset,
                          tags=args.tag)
    result = push_to_hub(
        args.model_dir, args.repo_id, dry_run_dir=args.dry_run, private=args.private, revision=args.revision,
        create_pr=args.create_pr, eval_results=load_eval_results(args.eval_results), card_options=options,
        commit_message=args.commit_message,
    )
    print("Validation:")
    print(result.report.describe())
    if result.dry_run_dir is not None:
        print(f"Dry run: nothing uploaded. These files would be committed to {args.repo_id}, written to "
              f"{result.dry_run_dir}:")
        print(format_file_table(result.files))
        return 0
    print(format_file_table(result.files))
    if result.pr_url:
        print(f"Opened pull request {result.pr_url}")
    elif result.changed:
        print(f"Committed to {result.repo_url}: {result.commit_url}")
    else:
        print(f"{result.repo_url} already holds exactly these files; nothing was committed.")
    return 0
