"""ColBERTXM.encode_document through a two-worker CPU pool against one process: throughput and equality.

    python benchmarks/probes/colbert_pool_cpu.py [DOCUMENTS] [CHUNK_SIZE]

Tiny random checkpoint, synthetic multilingual passages; the single process runs with one torch
thread. Prints both rates, their ratio, the largest vector difference and whether two documents
of one chunk share a storage (one tensor per chunk crossed the process boundary).
"""

import time, tempfile, sys, torch
from xm_integrations.testing import build_tiny_colbert_xm, synthetic_passages
from xm_integrations import ColBERTXM
if __name__ == "__main__":
    d = tempfile.mkdtemp()
    m = ColBERTXM(str(build_tiny_colbert_xm(d + "/c", dim=32)), language="en", device="cpu")
    ps = synthetic_passages(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
    texts = [p["text"] for p in ps]; langs = [p["language"] for p in ps]
    torch.set_num_threads(1)
    t = time.perf_counter(); single = m.encode_document(texts, language=langs); t1 = time.perf_counter() - t
    pool = m.start_multi_process_pool(["cpu", "cpu"])
    m.encode_document(texts[:200], language=langs[:200], pool=pool)
    t = time.perf_counter(); pooled = m.encode_document(texts, language=langs, pool=pool, chunk_size=int(sys.argv[2]) if len(sys.argv) > 2 else None); t2 = time.perf_counter() - t
    m.stop_multi_process_pool(pool)
    err = max(float((a - b).abs().max()) for a, b in zip(single, pooled))
    print(f"single {len(texts)/t1:.0f}/s  pool x2 {len(texts)/t2:.0f}/s  ratio {t1/t2:.2f}  max diff {err:.1e}  types {type(pooled[0]).__name__} storage-shared {pooled[0].untyped_storage().data_ptr() == pooled[1].untyped_storage().data_ptr()}")
