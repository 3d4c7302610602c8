#!/usr/bin/env bash
# Set everything up, then run the end-to-end demo on the bundled tiny models (no download).
#
# The tiny checkpoints have random weights: the scores mean nothing, the path is the point. They
# are filed under their real repo ids in a private hub cache, so the commands below load
# "antoinelouis/mono-xm" and "antoinelouis/colbert-xm" exactly as users do, with HF_HUB_OFFLINE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${XM_VENV:-.venv}/bin/python"
DEMO=.demo
"$PY" -m xm_integrations.testing build "$DEMO/models" --hub-cache "$DEMO/hub" 2>/dev/null
export HF_HUB_OFFLINE=1 HF_HUB_CACHE="$PWD/$DEMO/hub" TOKENIZERS_PARALLELISM=false

echo
echo "== Mono-XM reranks a multilingual list; each passage through its own adapter (--language auto)"
"$PY" -m xm_integrations rerank --model antoinelouis/mono-xm \
    --query-file xm_integrations/data/demo_query.txt xm_integrations/data/demo_passages.jsonl \
    --language auto --top-k 5 --format table --no-progress

echo
echo "== ColBERT-XM searches the same corpus in three languages, then Mono-XM reranks (--language auto)"
"$PY" -m xm_integrations search xm_integrations/data/demo_passages.jsonl --model antoinelouis/colbert-xm \
    -q 'When was the Eiffel Tower built?' -q 'Combien de caféine dans le thé vert ?' -q 'Was ist Photosynthese?' \
    --language auto --top-k 3 --rerank --reranker antoinelouis/mono-xm --format table --no-progress

echo
echo "== ColBERT-XM builds an index on disk once (LanceDB; re-running skips what is indexed), then searches it"
rm -rf "$DEMO/index"
"$PY" -m xm_integrations index xm_integrations/data/demo_passages.jsonl --index "$DEMO/index" \
    --model antoinelouis/colbert-xm --language auto --no-progress
"$PY" -m xm_integrations search --index "$DEMO/index" \
    -q 'When was the Eiffel Tower built?' -q 'Was ist Photosynthese?' --language auto --top-k 3 \
    --rerank --reranker antoinelouis/mono-xm --format table --no-progress
echo
echo "== The same index, filtered to French passages"
"$PY" -m xm_integrations search --index "$DEMO/index" -q 'When was the Eiffel Tower built?' --language en \
    --where "language = 'fr_XX'" --top-k 2 --format table --no-progress

echo
echo "== The same corpus encoded by actors on Ray (a local one-node cluster here; --ray ADDRESS for a real one)"
rm -rf "$DEMO/index-ray"
"$PY" -m xm_integrations index xm_integrations/data/demo_passages.jsonl --index "$DEMO/index-ray" \
    --model antoinelouis/colbert-xm --language auto --ray --ray-actors 1 --no-progress 2>&1 | grep -v -e '^20..-' -e '^\['
"$PY" -m xm_integrations search --index "$DEMO/index-ray" -q 'When was the Eiffel Tower built?' --language en \
    --top-k 2 --format table --no-progress

echo
echo "== The same search on Qdrant (qdrant-client's local mode here; QdrantIndex(url=...) for a server)"
"$PY" - <<'PYTHON'
import json

from xm_integrations import ColBERTXM
from xm_integrations.index import QdrantIndex

passages = [json.loads(line) for line in open("xm_integrations/data/demo_passages.jsonl") if line.strip()]
with QdrantIndex(location=":memory:", model=ColBERTXM("antoinelouis/colbert-xm")) as index:
    index.add_documents(passages, language="auto")
    for hit in index.search("When was the Eiffel Tower built?", language="en", top_k=2, return_text=True)[0]:
        print(f"{hit['score']:8.3f}  {hit['corpus_id']}  {hit['text'][:70]}")
PYTHON

echo
echo "== Fine-tune ColBERT-XM the X-MOD way (adapters frozen; en/es/pt rows, each through its adapter), then evaluate fr and de (zero-shot)"
TQDM_DISABLE=1 "$PY" examples/finetune.py --max-steps 20 --output-dir "$DEMO/finetuned"
