#!/usr/bin/env bash
# The contract, model and training tests again, on the lowest supported sentence-transformers and transformers.
#
# A second virtual environment (default .venv-lowest), set up like the main one (torch==2.13.0 first),
# then pinned to the floors of pyproject.toml. The newest versions are what the main run tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${XM_VENV_LOWEST:-.venv-lowest}"
XM_VENV="$VENV" bash scripts/setup.sh >/dev/null
"$VENV/bin/python" -m pip install -q "sentence-transformers==6.2.0" "transformers==5.17.0"
"$VENV/bin/python" -c "import sentence_transformers, transformers; print('lowest supported: sentence-transformers', sentence_transformers.__version__, '/ transformers', transformers.__version__)"
exec "$VENV/bin/python" -m pytest -q tests/compat tests/models tests/languages/test_arguments.py tests/training tests/examples "$@"
