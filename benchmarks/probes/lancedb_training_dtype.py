"""How long LanceDB takes to train the IVF-PQ index of a ``LanceDBIndex``, float16 against float32 columns.

Writes ``--documents`` clustered documents (``bench_index.corpus_chunk``) into two indexes that
differ only in ``vector_dtype``, then times ``optimize()`` on each, with CPU use. The same values
are stored in both (float16-rounded), so only the column type differs.

    python benchmarks/probes/lancedb_training_dtype.py --documents 30000
    taskset -c 0 python benchmarks/probes/lancedb_training_dtype.py --documents 30000   # one core
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for entry in (str(REPO), str(REPO / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from bench_index import iter_corpus  # noqa: E402

from xm_integrations.index import LanceDBIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=30000)
    parser.add_argument("--dtypes", default="float16,float32")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xm-probe-lance-"))
    try:
        for dtype in args.dtypes.split(","):
            index = LanceDBIndex(work / dtype, min_documents_for_ann=10**12, vector_dtype=dtype)
            tokens = 0
            for start, documents in iter_corpus("clustered", args.documents, 0):
                index.add([str(start + i) for i in range(len(documents))], documents)
                tokens += sum(len(d) for d in documents)
            index.min_documents_for_ann = 1
            before, t0 = os.times(), time.perf_counter()
            index.optimize()
            seconds, after = time.perf_counter() - t0, os.times()
            cores = (after.user + after.system - before.user - before.system) / seconds
            print(f"{dtype}: {args.documents} documents, {tokens} tokens, training {seconds:.1f} s "
                  f"({cores:.2f} cores busy on average, {len(os.sched_getaffinity(0))} available)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
