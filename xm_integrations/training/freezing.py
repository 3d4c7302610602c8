"""Freeze what the X-MOD recipe keeps fixed: the embeddings, every language adapter, the unused pooler.

X-MOD (and the xm-retrievers training of ColBERT-XM and Mono-XM) fine-tunes the shared weights on
one language and leaves the embeddings and the per-language adapters as pre-training made them,
so that swapping the adapter at inference transfers the fine-tuning to the other 80 languages
(zero-shot). transformers' ``freeze_embeddings_and_language_adapters()`` does this only on models
that have a ``roberta`` attribute: it raises on the bare ``XmodModel`` inside ColBERT-XM. It also
leaves the pooler of a bare ``XmodModel`` trainable, though no loss reaches it (ColBERT-XM uses
token vectors; its pooler is randomly initialised), which DistributedDataParallel reports as an
unused parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import XmodPreTrainedModel

from xm_integrations.compat.transformers import xmod_output_modules
from xm_integrations.languages.resolution import resolve_language
from xm_integrations.xmod.language_api import find_xmod_model

__all__ = ["FreezeSummary", "freeze_xmod"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreezeSummary:
    """What :func:`freeze_xmod` left trainable.

    Attributes:
        trainable: Parameters (elements) that still require gradients, in the whole model passed.
        total: All parameters (elements) of the model passed.
        frozen_tensors: How many parameter tensors were frozen by the call.
        trainable_languages: The adapters kept trainable, as checkpoint codes.
    """

    trainable: int
    total: int
    frozen_tensors: int
    trainable_languages: tuple[str, ...] = ()

    @property
    def trainable_fraction(self) -> float:
        """``trainable / total`` (0.0 for an empty model)."""
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.trainable:,} of {self.total:,} parameters trainable ({100 * self.trainable_fraction:.1f}%)"


def _xmod_of(model: torch.nn.Module) -> XmodPreTrainedModel:
    """The XMOD model inside any of our wrappers, a FlagEmbedding reranker (``.model``), or XMOD itself."""
    if isinstance(model, XmodPreTrainedModel):
        return model
    inner = getattr(model, "model", None)
    if not isinstance(model, torch.nn.Module) and isinstance(inner, torch.nn.Module):
        return find_xmod_model(inner)  # FlagReranker is not a Module; its .model is
    return find_xmod_model(model)


def _backbone(xmod: XmodPreTrainedModel) -> torch.nn.Module:
    """The ``XmodModel`` itself: ``xmod.roberta`` for the task heads, ``xmod`` for a bare ``XmodModel``."""
    return getattr(xmod, "roberta", xmod)


def freeze_xmod(
    model: torch.nn.Module,
    *,
    embeddings: bool = True,
    adapters: bool = True,
    pooler: bool = True,
    trainable_languages: Iterable[str] = (),
) -> FreezeSummary:
    """Freeze the XMOD model inside ``model`` as the X-MOD recipe does, in place; returns what stays trainable.

    Frozen: the embeddings (word, position, token type, and their LayerNorm), every language adapter
    of every layer (and the adapter LayerNorm where the config has one, ``adapter_layer_norm``; a
    layer LayerNorm that the adapters merely reuse is a shared weight and stays trainable), and the
    pooler of a bare ``XmodModel`` (ColBERT-XM never uses it). Everything else (attention, feed
    forward, layer norms, ColBERT-XM's projection, a classification head) keeps its
    ``requires_grad``. Nothing is ever unfrozen here: a parameter frozen before stays frozen.

    Args:
        model: ``ColBERTXM``, ``MonoXM``, ``XMFlagReranker``, any sentence-transformers model or
            module holding an XMOD model, or an XMOD model itself.
        embeddings: Freeze the embeddings.
        adapters: Freeze the language adapters.
        pooler: Freeze the pooler (when the XMOD model has one).
        trainable_languages: Adapters to keep trainable, in any form
            :func:`~xm_integrations.resolve_language` accepts (``"en"``, ``"fr-FR"``): for adapting
            a model to one language at the cost of zero-shot transfer from it.

    Returns:
        A :class:`FreezeSummary` with the trainable and total parameter counts of ``model``.

    Raises:
        TypeError: ``model`` holds no XMOD model.
        UnknownLanguageError: a ``trainable_languages`` entry has no adapter in the checkpoint.
    """
    xmod = _xmod_of(model)
    keep = tuple(dict.fromkeys(resolve_language(language, xmod.config.languages) for language in trainable_languages))
    frozen: list[torch.nn.Parameter] = []
    backbone = _backbone(xmod)
    if embeddings:
        frozen.extend(backbone.embeddings.parameters())
    if pooler and getattr(backbone, "pooler", None) is not None:
        frozen.extend(backbone.pooler.parameters())
    if adapters:
        for output in xmod_output_modules(xmod):
            if output.adapter_layer_norm is not None:
                frozen.extend(output.adapter_layer_norm.parameters())
            for language, adapter in output.adapter_modules.items():
                if language not in keep:
                    frozen.extend(adapter.parameters())
    newly_frozen = sum(1 for parameter in frozen if parameter.requires_grad)
    for parameter in frozen:
        parameter.requires_grad_(False)
    parameters = _parameters_of(model)
    summary = FreezeSummary(
        trainable=sum(parameter.numel() for parameter in parameters if parameter.requires_grad),
        total=sum(parameter.numel() for parameter in parameters),
        frozen_tensors=newly_frozen,
        trainable_languages=keep,
    )
    logger.info("Froze the XMOD embeddings, language adapters and pooler: %s.", summary)
    return summary


def _parameters_of(model: object) -> list[torch.nn.Parameter]:
    """Every distinct parameter of ``model`` (a FlagReranker's through its ``.model``)."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model")
    return list(module.parameters())
