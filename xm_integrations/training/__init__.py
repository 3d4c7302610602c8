"""Fine-tuning XMOD models with sentence-transformers' trainers, the X-MOD way.

The recipe (X-MOD, xm-retrievers): freeze the embeddings and every language adapter, train the
shared weights on one language (English MS MARCO for ColBERT-XM and Mono-XM), then swap adapters at
inference for zero-shot transfer. :class:`MonoXMTrainer` and :class:`ColBERTXMTrainer` do that by
default and route each row through its ``language`` column's adapter; :func:`freeze_xmod` is the
freezing on its own; :class:`ColBERTXMLoss` is colbert-ai's objective; :func:`language_evaluators`
builds per-language stock evaluators from the package's evaluation datasets. Needs the ``train``
extra (``datasets``, ``accelerate``).
"""

from xm_integrations.training.collators import ColBERTXMDataCollator, LanguageRouting, MonoXMDataCollator, route_rows
from xm_integrations.training.evaluation import language_evaluators
from xm_integrations.training.freezing import FreezeSummary, freeze_xmod
from xm_integrations.training.losses import ColBERTXMLoss, colbert_ai_loss_terms
from xm_integrations.training.trainers import ColBERTXMTrainer, MonoXMTrainer, check_dataset_languages

__all__ = [
    "ColBERTXMDataCollator",
    "ColBERTXMLoss",
    "ColBERTXMTrainer",
    "FreezeSummary",
    "LanguageRouting",
    "MonoXMDataCollator",
    "MonoXMTrainer",
    "check_dataset_languages",
    "colbert_ai_loss_terms",
    "freeze_xmod",
    "language_evaluators",
    "route_rows",
]
