"""Persistent multi-vector indexes: build once from a corpus, search in milliseconds, update in place.

* :class:`MultiVectorIndex` (:mod:`.base`): the interface (add, search, delete, count, the model
  record) and the model logic every backend shares: chunked encoding, exact MaxSim re-scoring,
  Mono-XM reranking.
* :class:`LanceDBIndex` (:mod:`.lancedb`): the embedded default, a folder on disk (needs the
  ``lancedb`` extra).
* :class:`QdrantIndex` (:mod:`.qdrant`): a Qdrant server or cluster, or qdrant-client's local
  mode (needs the ``qdrant`` extra).
* :class:`IndexModelRecord` (:mod:`.record`): what an index knows about the model that built it.

Each backend imports its engine when an index is opened, so ``import xm_integrations.index`` works
without any of them installed.
"""

from xm_integrations.index.base import (
    DEFAULT_CANDIDATES,
    DOCUMENTS_PER_CANDIDATE,
    AddResult,
    MultiVectorIndex,
    OnExisting,
    default_candidates,
)
from xm_integrations.index.documents import Passage, StoredDocument
from xm_integrations.index.lancedb import DEFAULT_NPROBES, DOCUMENTS_PER_PROBE, LanceDBIndex, default_nprobes
from xm_integrations.index.qdrant import QdrantIndex
from xm_integrations.index.record import IndexModelRecord

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_NPROBES",
    "DOCUMENTS_PER_CANDIDATE",
    "DOCUMENTS_PER_PROBE",
    "AddResult",
    "IndexModelRecord",
    "LanceDBIndex",
    "MultiVectorIndex",
    "OnExisting",
    "Passage",
    "QdrantIndex",
    "StoredDocument",
    "default_candidates",
    "default_nprobes",
]

