#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install xm-integrations with its test extras.
#
# torch==2.13.0 is installed FIRST and on its own: that exact pin takes the local CPU build on our
# machines, while any other spec (or letting a dependency pull torch) downloads GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${XM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[test]"
echo "xm-integrations is installed in $VENV"
