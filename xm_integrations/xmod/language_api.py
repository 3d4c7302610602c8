"""The XMOD model inside a wrapper, and its ``set_default_language`` resolving what people type.

transformers' ``set_default_language`` accepts only exact adapter codes (``fr_XX``), so the model
card's ``set_default_language("fr_FR")`` fails on the real model. :func:`install_language_resolution`
fixes that on one instance, without touching transformers' class.
"""

from __future__ import annotations

import torch
from transformers import XmodPreTrainedModel

from xm_integrations.errors import ArgumentTypeError
from xm_integrations.languages.resolution import resolve_language

__all__ = ["find_xmod_model", "install_language_resolution"]


def find_xmod_model(module: torch.nn.Module) -> XmodPreTrainedModel:
    """The outermost XMOD model inside ``module`` (for example a sentence-transformers model)."""
    for candidate in module.modules():
        if isinstance(candidate, XmodPreTrainedModel):
            return candidate
    raise ArgumentTypeError(
        f"{type(module).__name__} holds no XMOD model; xm_integrations wraps checkpoints whose config.json has "
        '"model_type": "xmod".'
    )


class _ResolvingSetDefaultLanguage:
    """``set_default_language`` for one model instance, accepting what people type (``"fr_FR"``).

    Installed as an instance attribute so the model card's
    ``model.model.set_default_language("fr_FR")`` works on our objects while transformers' class,
    and every other XMOD model in the process, stays untouched. A plain object (not a bound method)
    so that the model still pickles into multi-process pools.
    """

    def __init__(self, model: XmodPreTrainedModel) -> None:
        self.model = model

    def __call__(self, language: str) -> None:
        code = resolve_language(language, self.model.config.languages)
        XmodPreTrainedModel.set_default_language(self.model, code)


def install_language_resolution(model: XmodPreTrainedModel) -> None:
    """Make ``model.set_default_language`` resolve aliases (``fr_FR``, ``French``) on this instance only."""
    model.set_default_language = _ResolvingSetDefaultLanguage(model)
