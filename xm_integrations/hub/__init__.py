"""Publishing XMOD models: conversion, validation, model cards and upload to the Hugging Face Hub.

* :func:`convert_model`: a colbert-ai ColBERT-XM checkpoint (or a Mono-XM one) into the folder that
  stock sentence-transformers loads, with its default language.
* :func:`validate_model_folder`: stock libraries against xm_integrations on multilingual inputs.
* :func:`render_model_card`: the README.md, metadata through huggingface_hub's ``ModelCardData``.
* :func:`push_to_hub`: all of the above, then one commit (or a dry run).

The command line exposes them as ``xm-integrations convert``, ``push`` and ``evaluate``. May import
the model classes (to load what it validates and converts), :mod:`xm_integrations.evaluation.results`
and huggingface_hub; nothing imports it but the command line.
"""

from xm_integrations.hub.cards import CardOptions, eval_results_from_document, render_model_card
from xm_integrations.hub.convert import ConversionResult, convert_model
from xm_integrations.hub.model_folder import ModelFolder, ModelFolderError, ModelKind, read_model_folder
from xm_integrations.hub.upload import MissingTokenError, PushResult, UploadError, push_to_hub
from xm_integrations.hub.validate import ValidationError, ValidationReport, validate_model_folder

__all__ = [
    "CardOptions",
    "ConversionResult",
    "MissingTokenError",
    "ModelFolder",
    "ModelFolderError",
    "ModelKind",
    "PushResult",
    "UploadError",
    "ValidationError",
    "ValidationReport",
    "convert_model",
    "eval_results_from_document",
    "push_to_hub",
    "read_model_folder",
    "render_model_card",
    "validate_model_folder",
]
