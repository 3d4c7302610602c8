"""A Ray driver for the distributed tests, run inside the test cluster's network namespace.

``python -m tests.distributed.ray_driver JOB.json`` reads what to do from the file and writes what
happened as JSON to ``JOB.json.result`` (not stdout, which Ray also writes to). Jobs: ``index`` (index a JSON-lines corpus (read here) or a Parquet corpus (read by Ray) into a LanceDB folder
or a Qdrant local-mode folder with :func:`index_with_ray`) and ``encode`` (write the encoded
corpus as Parquet with :func:`encode_with_ray`).
"""

from __future__ import annotations

import json
import sys

import ray

from xm_integrations import ColBERTXM
from xm_integrations.distributed import encode_with_ray, index_with_ray
from xm_integrations.index import LanceDBIndex, QdrantIndex


def main(job_file: str) -> None:
    job = json.loads(open(job_file).read())
    ray.init(address=job["address"], log_to_driver=False)
    model = ColBERTXM(job["model"], device="cpu")
    if job["corpus"].endswith(".parquet"):  # read by Ray Data on the nodes, not by this driver
        corpus = job["corpus"]
    else:
        with open(job["corpus"]) as lines:
            corpus = [json.loads(line) for line in lines if line.strip()]
    options = job.get("options", {})
    if job["kind"] == "encode":
        encode_with_ray(corpus, model, **options).write_parquet(job["output"])
        report(job_file, {"written": job["output"]})
        return
    if job["backend"] == "lancedb":
        index = LanceDBIndex(job["index"], model=model, min_documents_for_ann=job.get("min_documents_for_ann", 1000))
    else:
        index = QdrantIndex(path=job["index"], model=model)
    with index:
        result = index_with_ray(index, corpus, show_progress_bar=False, **options)
        count = len(index)
    report(job_file, {"added": result.added, "updated": result.updated, "skipped": result.skipped, "count": count,
                      "failed": [{"ids": batch.ids, "error": batch.error} for batch in result.failed]})


def report(job_file: str, result: dict) -> None:
    with open(job_file + ".result", "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main(sys.argv[1])
