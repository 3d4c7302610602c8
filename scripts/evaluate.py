#!/usr/bin/env python
"""Same as `xm-integrations evaluate` (see `--help`); kept as a script for checkouts without the entry point."""

import sys
from pathlib import Path

# This file is named like Hugging Face's `evaluate` package, and Python puts its folder first on
# sys.path: libraries probing for `evaluate` (transformers does) would find this script instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from xm_integrations.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
