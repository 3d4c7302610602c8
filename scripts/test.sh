#!/usr/bin/env bash
# Set everything up, then run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test_lowest.sh  # the contract and model tests on the lowest supported versions (a second venv)
exec "${XM_VENV:-.venv}/bin/python" -m pytest tests "$@"
