"""sentence-transformers' trainers for XMOD models: the X-MOD recipe by default, a language per row.

:class:`MonoXMTrainer` is a ``CrossEncoderTrainer`` and :class:`ColBERTXMTrainer` a
``MultiVectorEncoderTrainer``; every stock argument, loss, evaluator and callback works as in
them. What they add, as keyword arguments:

* ``freeze=True``: :func:`~xm_integrations.training.freezing.freeze_xmod` before training (the
  embeddings, every language adapter, the unused pooler), so the fine-tuned shared weights
  transfer zero-shot to every adapter; ``trainable_languages`` keeps chosen adapters trainable.
  Frozen parameters never reach the optimizer (transformers' ``Trainer`` builds it from the
  parameters that require gradients).
* a ``language`` column per row (``language_column``), or ``training_language`` for rows without
  one: each row's texts go through that adapter, and each batch's rows are grouped by adapter
  (:mod:`xm_integrations.training.collators`). The model's ``default_language`` is never changed.
  A language without an adapter fails when the trainer is built, naming the first row that has it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sentence_transformers.cross_encoder.trainer import CrossEncoderTrainer
from sentence_transformers.multi_vector_encoder.trainer import MultiVectorEncoderTrainer

from xm_integrations.errors import UnknownLanguageError
from xm_integrations.languages.resolution import resolve_language
from xm_integrations.languages.routing import is_auto
from xm_integrations.training.collators import (
    LANGUAGE_COLUMN,
    ColBERTXMDataCollator,
    LanguageRouting,
    MonoXMDataCollator,
)
from xm_integrations.training.freezing import FreezeSummary, freeze_xmod

__all__ = ["ColBERTXMTrainer", "MonoXMTrainer", "check_dataset_languages"]

logger = logging.getLogger(__name__)


class _XmodTrainerMixin:
    """What both trainers add to the stock ones; placed before the stock class."""

    freeze_summary: FreezeSummary | None

    def __init__(self, *args: Any, freeze: bool = True, trainable_languages: Iterable[str] = (),
                 language_column: str = LANGUAGE_COLUMN, training_language: str | None = None,
                 group_by_language: bool = True, **kwargs: Any) -> None:
        # Stored before the stock constructor, which builds the collator and may call model_init.
        self._xmod_freeze = freeze
        self._xmod_trainable_languages = tuple(trainable_languages)
        self._xmod_language_column = language_column
        self._xmod_training_language = training_language
        self._xmod_group_by_language = group_by_language
        self.freeze_summary = None
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._prepare_xmod(self.model)  # type: ignore[attr-defined]

    def _routing(self, model: Any) -> LanguageRouting:
        return LanguageRouting(model, language_column=self._xmod_language_column,
                               training_language=self._xmod_training_language,
                               group_by_language=self._xmod_group_by_language)

    def _prepare_xmod(self, model: Any) -> None:
        """Freeze ``model`` (when asked) and check the datasets' languages before any step runs."""
        routing = self._routing(model)
        routing.training_code()  # a misspelt training_language fails here
        for dataset in _datasets_of(getattr(self, "train_dataset", None)) + _datasets_of(getattr(self, "eval_dataset", None)):
            check_dataset_languages(dataset, routing)
        if self._xmod_freeze:
            self.freeze_summary = freeze_xmod(model, trainable_languages=self._xmod_trainable_languages)
            logger.info("%s: %s", type(self).__name__, self.freeze_summary)

    def get_data_collator(self, model: Any, args: Any, processing_class: Any = None) -> Any:
        """The stock collator of this trainer, routing each row through its language (see the module docstring)."""
        collator = super().get_data_collator(model, args, processing_class)  # type: ignore[misc]
        collator.routing = self._routing(model)
        return collator

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        """The stock model card callback, shown the datasets without their language column.

        The card computes token statistics of every text-like column with ``model.preprocess``,
        which an empty language entry would break; the languages are not texts to tokenize.
        """
        saved = {name: getattr(self, name, None) for name in ("train_dataset", "eval_dataset")}
        try:
            for name, dataset in saved.items():
                setattr(self, name, _without_column(dataset, self._xmod_language_column))
            super().add_model_card_callback(default_args_dict)  # type: ignore[misc]
        finally:
            for name, dataset in saved.items():
                setattr(self, name, dataset)

    def call_model_init(self, trial: Any = None) -> Any:
        """A model from ``model_init`` is frozen like a model passed directly."""
        model = super().call_model_init(trial=trial)  # type: ignore[misc]
        if getattr(self, "_xmod_freeze", False):
            self.freeze_summary = freeze_xmod(model, trainable_languages=self._xmod_trainable_languages)
        return model


def _datasets_of(dataset: Any) -> list[Any]:
    if dataset is None:
        return []
    if isinstance(dataset, dict):  # DatasetDict or a dict of datasets
        return list(dataset.values())
    return [dataset]


def _without_column(dataset: Any, column: str) -> Any:
    """``dataset`` without ``column`` where it is a ``datasets`` dataset (or a dict of them) that has it."""
    if isinstance(dataset, dict):
        return type(dataset)({name: _without_column(part, column) for name, part in dataset.items()})
    if column in (getattr(dataset, "column_names", None) or ()) and hasattr(dataset, "remove_columns"):
        return dataset.remove_columns(column)
    return dataset


def check_dataset_languages(dataset: Any, routing: LanguageRouting) -> None:
    """Resolve every distinct value of the language column of a ``datasets.Dataset`` once, before training.

    Iterable datasets are checked batch by batch by the collator instead.

    Raises:
        UnknownLanguageError: a value has no adapter; the message names the first row holding it.
    """
    names = getattr(dataset, "column_names", None)
    if not names or routing.language_column not in names or not hasattr(dataset, "unique"):
        return
    available = routing.model.languages
    for value in dataset.unique(routing.language_column):
        if value is None or not isinstance(value, str) or not value.strip() or is_auto(value):
            continue  # empty: the training language (checked per batch); other types: the collator's error
        try:
            resolve_language(value, available)
        except UnknownLanguageError as error:
            row = dataset[routing.language_column].index(value)
            raise UnknownLanguageError(
                value, error.available, error.suggestions,
                f"{error.reason} (row {row} of the dataset, column {routing.language_column!r})",
            ) from None


class MonoXMTrainer(_XmodTrainerMixin, CrossEncoderTrainer):
    """``CrossEncoderTrainer`` for ``MonoXM``: adapters frozen by default, a language per row.

    Every stock argument and loss works (``BinaryCrossEntropyLoss``, the Mono-XM recipe, is the
    stock default for one label). Under ``bf16=True`` / ``fp16=True`` it trains where a stock
    ``CrossEncoder`` on XMOD crashes (transformers' adapter dispatch writes half-precision outputs
    into a float32 buffer; ``MonoXM`` runs its own dispatch).

    Args:
        *args, **kwargs: Everything ``CrossEncoderTrainer`` takes, in its order.
        freeze: Freeze the embeddings, every language adapter and the pooler (the X-MOD recipe).
        trainable_languages: Adapters that stay trainable despite ``freeze``.
        language_column: The dataset column with each row's language (any code, tag or name, or
            ``"auto"``); rows without it use ``training_language``.
        training_language: The language of rows without one; ``None``: the model's default language.
        group_by_language: Sort each batch's rows by adapter (faster; same rows per batch).

    Example::

        model = MonoXM("antoinelouis/mono-xm")
        trainer = MonoXMTrainer(model=model, args=args, train_dataset=pairs, training_language="en")
        trainer.train()
    """

    data_collator_class = MonoXMDataCollator


class ColBERTXMTrainer(_XmodTrainerMixin, MultiVectorEncoderTrainer):
    """``MultiVectorEncoderTrainer`` for ``ColBERTXM``: adapters frozen by default, a language per row.

    Every stock multi-vector loss works (``MultiVectorMultipleNegativesRankingLoss``, the default;
    the distillation and margin losses), and :class:`~xm_integrations.training.losses.ColBERTXMLoss`
    reproduces colbert-ai's objective. Queries and documents are tokenized exactly as colbert-ai
    does (``ColBERTXM.preprocess``, column 0 as queries). Arguments as for :class:`MonoXMTrainer`.

    Example::

        model = ColBERTXM("antoinelouis/colbert-xm")
        trainer = ColBERTXMTrainer(model=model, args=args, train_dataset=triples,
                                   loss=ColBERTXMLoss(model), training_language="en")
        trainer.train()
    """

    data_collator_class = ColBERTXMDataCollator
