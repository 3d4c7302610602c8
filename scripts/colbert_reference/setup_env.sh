#!/usr/bin/env bash
# Reference environment for colbert-ai 0.2.22 (CPU), used to generate ColBERT-XM fixtures.
#
#   bash scripts/colbert_reference/setup_env.sh [VENV_DIR]     (default: /tmp/colbert-ref-venv)
#
# Idempotent: re-running only checks/installs what is missing (pip skips satisfied pins).
# Order matters: torch==2.13.0 FIRST (the only spec that resolves to the local CPU wheel in
# /opt/wheels; any other spec would pull the CUDA wheels), then everything else, which then sees
# torch as already satisfied.
#
# Why not a plain `pip install colbert-ai`:
#   * colbert-ai 0.2.22 is incompatible with transformers 5 (HF_ColBERT lacks
#     all_tied_weights_keys), so transformers is pinned to 4.48.x;
#   * colbert-ai is installed with --no-deps so pip cannot touch torch, and so that the faiss /
#     datasets requirements are not installed: Checkpoint encoding needs neither.
set -euo pipefail

VENV="${1:-/tmp/colbert-ref-venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

# 1. torch, CPU wheel, before anything that depends on it.
"${PIP[@]}" "torch==2.13.0"

# 2. transformers 4.48.x (the last line colbert-ai 0.2.22 works with here) + tokenizer backends.
#    sentencepiece/protobuf: XLM-R slow tokenizer and slow->fast conversion; safetensors: weights.
"${PIP[@]}" "transformers>=4.48,<4.49" "tokenizers" "sentencepiece" "protobuf" "safetensors" "numpy"

# 3. colbert-ai itself, without its declared dependencies.
"${PIP[@]}" --no-deps "colbert-ai==0.2.22"

# 4. What `from colbert.modeling.checkpoint import Checkpoint` (and its imports) actually needs,
#    taken from colbert-ai's install_requires minus datasets/faiss (not imported on that path).
"${PIP[@]}" bitarray ujson GitPython python-dotenv ninja scipy flask tqdm

# 5. Smoke test.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
from colbert.modeling.checkpoint import Checkpoint  # noqa: F401
from colbert.infra.config import ColBERTConfig  # noqa: F401
print("colbert-ai reference env OK:",
      {p: md.version(p) for p in ("colbert-ai", "torch", "transformers", "tokenizers", "numpy")})
PY
