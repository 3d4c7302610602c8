"""Retrieval evaluation: metrics, dataset loaders, runners for ColBERT-XM and Mono-XM, results files.

Owns :mod:`.metrics` (MRR, nDCG, recall, trec_eval conventions), :mod:`.datasets` (BEIR and
ir_datasets export layouts, per-language folders), :mod:`.runners` (retrieve with ColBERT-XM, rerank
with Mono-XM, :func:`evaluate_model`) and :mod:`.results` (the results document the model cards
read, TREC runs). May import the model classes (lazily) and :mod:`xm_integrations.scoring`; the hub
package imports :mod:`.results` only.
"""

from xm_integrations.evaluation.runners import *  # noqa: F401,F403 - split into modules below
from xm_integrations.evaluation.runners import __all__  # noqa: F401
