"""Running the package's models beyond one machine: corpus encoding on a Ray cluster (Ray Data).

* :func:`encode_with_ray` (:mod:`.ray_encoding`): a corpus (a Ray Dataset, Parquet or JSON lines,
  or passages in memory) encoded by ColBERT-XM actors, one model per actor, one actor per GPU, as
  a lazy dataset that indexes ingest or that Ray writes to Parquet.
* :func:`index_with_ray` / :func:`add_encoded` (:mod:`.ray_indexing`): that dataset, or the Parquet
  files, written into any :class:`~xm_integrations.index.MultiVectorIndex` (LanceDB, Qdrant),
  resumable, with failed batches reported by id.

Owns nothing of the models or indexes themselves: it calls ``ColBERTXM.encode_document`` in the
actors and the index's write primitives on the driver. Ray is imported when a function runs, so
this package imports without the ``ray`` extra.
"""

from xm_integrations.distributed.ray_encoding import ENCODED_COLUMNS, encode_with_ray, passage_dataset
from xm_integrations.distributed.ray_indexing import FailedBatch, RayIndexingResult, add_encoded, index_with_ray

__all__ = [
    "ENCODED_COLUMNS",
    "FailedBatch",
    "RayIndexingResult",
    "add_encoded",
    "encode_with_ray",
    "index_with_ray",
    "passage_dataset",
]
