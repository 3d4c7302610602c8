"""``python -m xm_integrations.testing build OUT [--hub-cache DIR]``: write the tiny checkpoints.

Writes ``OUT/mono-xm`` and ``OUT/colbert-xm``; with ``--hub-cache`` also files them under their
real repo ids (``antoinelouis/mono-xm``, ``antoinelouis/colbert-xm``) in that hub cache, so that
``HF_HUB_OFFLINE=1 HF_HUB_CACHE=DIR`` loads them by repo id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xm_integrations.testing import build_tiny_colbert_xm, build_tiny_mono_xm, populate_hub_cache

REPO_IDS = {"mono-xm": "antoinelouis/mono-xm", "colbert-xm": "antoinelouis/colbert-xm"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xm_integrations.testing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the tiny Mono-XM and ColBERT-XM checkpoints")
    build.add_argument("out", type=Path, help="folder to write mono-xm/ and colbert-xm/ into")
    build.add_argument("--hub-cache", type=Path, help="also file them under their repo ids in this hub cache")
    args = parser.parse_args(argv)
    folders = {
        "mono-xm": build_tiny_mono_xm(args.out / "mono-xm"),
        "colbert-xm": build_tiny_colbert_xm(args.out / "colbert-xm"),
    }
    for name, folder in folders.items():
        print(f"{name}: {folder}")
        if args.hub_cache is not None:
            snapshot = populate_hub_cache(folder, REPO_IDS[name], args.hub_cache)
            print(f"  cached as {REPO_IDS[name]} in {snapshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
