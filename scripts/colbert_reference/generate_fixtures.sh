#!/usr/bin/env bash
# Regenerate tests/fixtures/colbert_ai/ from the package's tiny ColBERT-XM builder.
#
#   bash scripts/colbert_reference/generate_fixtures.sh [OUT_DIR]
#
# Two interpreters on purpose:
#   * $PROJECT_PYTHON (default: .venv/bin/python, transformers 5) builds the checkpoint with
#     xm_integrations.testing.build_tiny_colbert_xm, exactly as the tests will rebuild it;
#   * $COLBERT_VENV/bin/python (default /tmp/colbert-ref-venv, see setup_env.sh; transformers 4.48,
#     colbert-ai 0.2.22) encodes with colbert-ai (make_fixtures.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/tests/fixtures/colbert_ai}"
PROJECT_PYTHON="${PROJECT_PYTHON:-$ROOT/.venv/bin/python}"
COLBERT_VENV="${COLBERT_VENV:-/tmp/colbert-ref-venv}"

if [ ! -x "$COLBERT_VENV/bin/python" ]; then
    bash "$ROOT/scripts/colbert_reference/setup_env.sh" "$COLBERT_VENV"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# The folder name matters: the builder writes it into artifact.metadata (name, model_name).
CKPT="$WORK/tiny-colbert-xm"
BUILDER="xm_integrations.testing.checkpoints.build_tiny_colbert_xm"
KWARGS='{"dim": 32, "query_maxlen": 32, "doc_maxlen": 256, "seed": 0}'

(cd "$ROOT" && "$PROJECT_PYTHON" - "$CKPT" "$KWARGS" <<'PY'
import json, sys
from xm_integrations.testing.checkpoints import build_tiny_colbert_xm
build_tiny_colbert_xm(sys.argv[1], **json.loads(sys.argv[2]))
PY
)

INFO="$("$PROJECT_PYTHON" - "$BUILDER" "$KWARGS" "$CKPT" <<'PY'
import json, sys
from pathlib import Path
builder, kwargs, ckpt = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
config = json.loads((ckpt / "config.json").read_text())
print(json.dumps({
    "function": builder,
    "path_argument": f"<tmp>/{ckpt.name}",
    "folder_name": ckpt.name,
    "kwargs": kwargs,
    "languages_in_config": config["languages"],
    "default_language_in_config": config.get("default_language"),
    "rebuild": f"build_tiny_colbert_xm(tmp_path / {ckpt.name!r}, **kwargs); compare checkpoint_files_sha256",
}))
PY
)"

MAKE=("$COLBERT_VENV/bin/python" "$ROOT/scripts/colbert_reference/make_fixtures.py" "$CKPT" "$OUT")
# 1. The checkpoint's own settings (artifact.metadata: query_maxlen 32, doc_maxlen 256,
#    attend_to_mask_tokens true, mask_punctuation true).
"${MAKE[@]}" --languages fr_XX de_DE zh_CN --checkpoint-info "$INFO"
# 2. colbert-ai's default attend_to_mask_tokens=false (query [MASK] padding gets attention mask 0),
#    with other maxlens, in case the real checkpoint's metadata differs from the builder's.
"${MAKE[@]}" --languages fr_XX en_XX --attend-to-mask-tokens false --query-maxlen 24 --doc-maxlen 48 \
    --stem colbert_ai_reference_no_mask_attention --checkpoint-info "$INFO"
du -ch "$OUT"/* | tail -1
