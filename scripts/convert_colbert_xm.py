#!/usr/bin/env python
"""Same as `xm-integrations convert` (see `--help`); kept as a script for checkouts without the entry point."""

import sys

from xm_integrations.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
