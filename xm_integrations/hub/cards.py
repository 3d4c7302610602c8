"""Model cards for XMOD models: metadata through huggingface_hub's ``ModelCardData``, body from Jinja templates.

The templates live in ``xm_integrations/hub/templates/``, the one place they are edited; the
package ships that folder as it is.

Every usage snippet in a card is runnable as written: the tests render cards for the tiny test
checkpoints, file them in an offline hub cache under the card's repo id, and execute each
```` ```python ```` block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from xm_integrations.errors import InvalidArgumentError, ModelFolderError
from xm_integrations.evaluation.results import iter_eval_entries
from xm_integrations.hub.model_folder import ModelFolder, ModelKind, read_model_folder
from xm_integrations.languages.resolution import XMOD_LANGUAGES, UnknownLanguageError, language_to_iso, resolve_language

__all__ = [
    "CardOptions",
    "TEMPLATE_NAMES",
    "eval_results_from_document",
    "render_model_card",
    "template_folder",
]

#: Template file per model kind.
TEMPLATE_NAMES: dict[ModelKind, str] = {
    ModelKind.COLBERT_XM: "colbert_xm.md",
    ModelKind.MONO_XM: "mono_xm.md",
    ModelKind.XMOD: "xmod.md",
}

_PACKAGE_TEMPLATES = Path(__file__).parent / "templates"

_METRIC_NAMES = {"mrr": "MRR", "ndcg": "nDCG", "recall": "Recall"}
_TASKS = {"retrieval": ("text-retrieval", "Retrieval"), "reranking": ("text-ranking", "Reranking")}


@dataclass
class _Profile:
    """Metadata defaults of a model kind; explicit options override each field."""

    library_name: str
    pipeline_tag: str | None
    tags: tuple[str, ...]
    license: str | None = None
    base_model: str | None = "facebook/xmod-base"
    datasets: tuple[str, ...] = ()
    title: str = "XMOD model"


# ColBERT-XM and Mono-XM were fine-tuned from facebook/xmod-base on MS MARCO and released under MIT;
# models converted from them or built like them inherit those defaults unless told otherwise.
_PROFILES: dict[ModelKind, _Profile] = {
    ModelKind.COLBERT_XM: _Profile(
        library_name="sentence-transformers",
        # sentence-transformers' own multi-vector cards use feature-extraction: a sentence-similarity
        # widget would expect one vector per text.
        pipeline_tag="feature-extraction",
        tags=("sentence-transformers", "multi-vector", "colbert", "late-interaction", "xmod", "multilingual",
              "passage-retrieval"),
        license="mit", datasets=("ms_marco",), title="ColBERT-XM",
    ),
    ModelKind.MONO_XM: _Profile(
        library_name="sentence-transformers",
        pipeline_tag="text-ranking",
        tags=("sentence-transformers", "cross-encoder", "reranker", "xmod", "multilingual", "passage-reranking"),
        license="mit", datasets=("ms_marco",), title="Mono-XM",
    ),
    ModelKind.XMOD: _Profile(library_name="transformers", pipeline_tag=None, tags=("xmod", "multilingual")),
}

# A query and two passages (the first relevant) per language, for the snippets. Texts in other
# languages fall back to English: the snippet stays runnable, only less illustrative.
_EXAMPLES: dict[str, tuple[str, str, str]] = {
    "en": ("When was the Eiffel Tower built?",
           "The Eiffel Tower was built in Paris for the 1889 World's Fair.",
           "A cup of green tea contains less caffeine than a cup of coffee."),
    "fr": ("Quand la tour Eiffel a-t-elle été construite ?",
           "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889.",
           "Une tasse de thé vert contient moins de caféine qu'une tasse de café."),
    "de": ("Was ist Photosynthese?",
           "Die Photosynthese wandelt Sonnenlicht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
           "Der Eiffelturm wurde für die Weltausstellung 1889 in Paris gebaut."),
    "es": ("¿Cuándo se construyó la Torre Eiffel?",
           "La Torre Eiffel se construyó en París para la Exposición Universal de 1889.",
           "Una taza de té verde contiene menos cafeína que una taza de café."),
    "zh": ("什么是光合作用？", "光合作用把阳光、水和二氧化碳转化为糖和氧气。", "埃菲尔铁塔是为1889年世界博览会在巴黎建造的。"),
}


@dataclass
class CardOptions:
    """What the folder cannot tell: metadata chosen by whoever publishes the model.

    ``None`` (or empty) fields take the defaults of the model kind (MIT, ``facebook/xmod-base``,
    ``ms_marco`` for ColBERT-XM and Mono-XM); ``license`` has no default for other XMOD models.
    """

    license: str | None = None
    base_model: str | None = None
    datasets: Sequence[str] = ()
    tags: Sequence[str] = ()
    model_name: str | None = None
    eval_results: Sequence[Mapping[str, Any]] = field(default_factory=list)


def template_folder() -> Path:
    """The folder of the card templates (inside the package)."""
    return _PACKAGE_TEMPLATES


def _python_string(text: str) -> str:
    """A Python string literal that keeps non-ASCII text readable (``"thé"``, not ``"th\\u00e9"``)."""
    return json.dumps(text, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_folder()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters["py"] = _python_string
    return environment


# ----------------------------------------------------------------------------------------------
# Languages
# ----------------------------------------------------------------------------------------------


def iso_languages(languages: Sequence[str]) -> list[str]:
    """The ISO 639-1 code of every adapter, once each, in adapter order (``zh_CN`` and ``zh_TW`` give one ``zh``)."""
    return list(dict.fromkeys(language_to_iso(code) for code in languages))


_BY_CODE = {lang.code: lang for lang in XMOD_LANGUAGES}


def _language_rows(languages: Sequence[str]) -> list[dict[str, str]]:
    """One table row per adapter: its code, ISO code, name, and other spellings that resolve to it here."""
    rows = []
    for code in languages:
        lang = _BY_CODE.get(code)
        iso = language_to_iso(code)
        candidates = [iso, *(lang.iso3 if lang else ()), lang.name if lang else "", *(lang.aliases if lang else ()),
                      code.replace("_", "-")]
        accepted = [c for c in dict.fromkeys(candidates) if c and c != code and _resolves_to(c, languages, code)]
        rows.append({
            "code": code,
            "iso": iso,
            "name": lang.name if lang else code,
            "accepted": ", ".join(f"`{alias}`" if alias.isascii() and " " not in alias else alias for alias in accepted),
        })
    return rows


def _resolves_to(alias: str, languages: Sequence[str], code: str) -> bool:
    try:
        return resolve_language(alias, languages) == code
    except UnknownLanguageError:
        return False


def _alias_for(code: str, languages: Sequence[str]) -> str:
    """A short way to write ``code`` that xm_integrations resolves back to it (``fr`` for ``fr_XX``)."""
    for alias in (language_to_iso(code), code.replace("_", "-")):
        if _resolves_to(alias, languages, code):
            return alias
    return code


def _example_languages(folder: ModelFolder) -> tuple[str, str]:
    """The adapter the snippets use first (the default) and a second one, preferring languages with example texts."""
    first = folder.default_language or folder.languages[0]
    preferred = [code for iso in ("de", "fr", "en", "es", "zh") for code in folder.languages
                 if language_to_iso(code) == iso and code != first]
    others = [code for code in folder.languages if code != first]
    return first, (preferred or others or [first])[0]


def _example(code: str) -> dict[str, str]:
    query, positive, negative = _EXAMPLES.get(language_to_iso(code), _EXAMPLES["en"])
    return {"query": query, "positive": positive, "negative": negative}


# ----------------------------------------------------------------------------------------------
# Evaluation results
# ----------------------------------------------------------------------------------------------


def _metric_label(metric: str) -> str:
    name, _, cutoff = metric.partition("@")
    return f"{_METRIC_NAMES.get(name, name)}@{cutoff}"


def eval_results_from_document(document: Mapping[str, Any]) -> list[EvalResult]:
    """The card's ``model-index`` entries for a results file written by ``xm-integrations evaluate``.

    One entry per language and metric, plus the macro-average over languages when there are several.

    Raises:
        ValueError: the document is not such a results file.
    """
    task_type, task_name = _TASKS.get(document.get("task", ""), ("text-retrieval", "Retrieval"))
    dataset = document.get("dataset") or {}
    name = dataset.get("name") or "evaluation"
    results = []
    for language, metric, value in iter_eval_entries(document):
        metric_name, _, cutoff = metric.partition("@")
        config = language_to_iso(language) if language and _looks_like_language(language) else language
        results.append(EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset.get("id") or name,
            dataset_name=f"{name} ({language})" if language else f"{name} (average)",
            dataset_config=config,
            dataset_split=dataset.get("split"),
            metric_type=f"{metric_name}_at_{cutoff}",
            metric_name=_metric_label(metric),
            metric_value=round(value, 4),
        ))
    return results


def _looks_like_language(name: str) -> bool:
    try:
        resolve_language(name)
    except UnknownLanguageError:
        return False
    return True


def _results_tables(documents: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per results file: a title, the metric labels, and one row per language (then the average)."""
    tables = []
    for document in documents:
        metrics = list(document["metrics"])
        rows = [{"label": language, "cells": [f"{values[m]:.4f}" for m in metrics]}
                for language, values in document["per_language"].items()]
        if len(rows) > 1:
            rows.append({"label": "**average**", "cells": [f"{document['average'][m]:.4f}" for m in metrics]})
        dataset = document.get("dataset") or {}
        tables.append({
            "title": f"{dataset.get('name') or 'evaluation'} ({dataset.get('split') or 'test'}), "
                     f"{_TASKS.get(document.get('task', ''), ('', 'Retrieval'))[1].lower()}",
            "metrics": [_metric_label(m) for m in metrics],
            "rows": rows,
        })
    return tables


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _card_data(folder: ModelFolder, repo_id: str, options: CardOptions, profile: _Profile,
               eval_results: list[EvalResult]) -> ModelCardData:
    license_ = options.license or profile.license
    if license_ is None:
        raise InvalidArgumentError(
            f"No license for {repo_id}: pass one (e.g. --license apache-2.0); an XMOD model of kind "
            f"{folder.kind.value!r} has no default license."
        )
    tags = list(dict.fromkeys([*profile.tags, *options.tags]))
    return ModelCardData(
        language=iso_languages(folder.languages),
        license=license_,
        library_name=profile.library_name,
        pipeline_tag=profile.pipeline_tag or _xmod_pipeline_tag(folder),
        base_model=options.base_model or profile.base_model,
        datasets=list(options.datasets) or list(profile.datasets) or None,
        tags=tags,
        model_name=options.model_name or repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )


_XMOD_PIPELINE_TAGS = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
    "ForMultipleChoice": "multiple-choice",
    "ForMaskedLM": "fill-mask",
    "ForCausalLM": "text-generation",
}


def _xmod_pipeline_tag(folder: ModelFolder) -> str:
    """The Hub task of a generic XMOD checkpoint, from its architecture (what its card's snippets do with it)."""
    for arch in folder.config.get("architectures") or []:
        for suffix, tag in _XMOD_PIPELINE_TAGS.items():
            if arch.endswith(suffix):
                return tag
    return "feature-extraction"  # XmodModel: the card shows embeddings


def render_model_card(model_dir: str | Path | ModelFolder, repo_id: str, options: CardOptions | None = None) -> ModelCard:
    """Render the card of a model folder, for publication under ``repo_id``.

    Args:
        model_dir: The folder (or its :class:`ModelFolder`).
        repo_id: Where it will live; the snippets load the model by this id.
        options: License, base model, datasets, extra tags and evaluation results documents.

    Returns:
        A ``ModelCard``; ``str(card)`` is the README.md text, ``card.data`` its metadata.

    Raises:
        ModelFolderError: not an XMOD model folder.
        ValueError: a raw colbert-ai checkpoint (convert it first), or no license for a generic XMOD model.
    """
    folder = model_dir if isinstance(model_dir, ModelFolder) else read_model_folder(model_dir)
    options = options or CardOptions()
    if folder.kind is ModelKind.COLBERT_AI:
        raise ModelFolderError(
            f"{folder.path} is a colbert-ai HF_ColBERT checkpoint; stock sentence-transformers does not encode it as "
            "colbert-ai did. Convert it first: `xm-integrations convert "
            f"{folder.path} OUT_DIR --language LANG`, then render or push OUT_DIR."
        )
    profile = _PROFILES[folder.kind]
    eval_results = [entry for document in options.eval_results for entry in eval_results_from_document(document)]
    card_data = _card_data(folder, repo_id, options, profile, eval_results)
    first, second = _example_languages(folder)
    context = {
        "card_data": card_data.to_yaml(),
        "repo_id": repo_id,
        "model_name": card_data.model_name,
        "title": profile.title,
        "base_model": card_data.base_model,
        "datasets": card_data.datasets or [],
        "license": card_data.license,
        "languages": _language_rows(folder.languages),
        "num_languages": len(folder.languages),
        "default_language": folder.default_language,
        "first_language": first,
        "first_alias": _alias_for(first, folder.languages),
        "second_language": second,
        "second_alias": _alias_for(second, folder.languages),
        "first_example": _example(first),
        "second_example": _example(second),
        "config": folder.config,
        "is_classifier": any(a.endswith("ForSequenceClassification") for a in folder.config.get("architectures") or []),
        "colbert": _colbert_settings(folder) if folder.kind is ModelKind.COLBERT_XM else {},
        "results_tables": _results_tables(options.eval_results),
    }
    text = _environment().get_template(TEMPLATE_NAMES[folder.kind]).render(**context)
    return ModelCard(text)


def _colbert_settings(folder: ModelFolder) -> dict[str, Any]:
    """Query and document lengths and the vector size, read from the sentence-transformers config files."""
    settings: dict[str, Any] = {}
    transformer_config = folder.path / "sentence_bert_config.json"
    if transformer_config.is_file():
        data = json.loads(transformer_config.read_text(encoding="utf-8"))
        expansion = data.get("query_expansion") or {}
        settings["query_maxlen"] = expansion.get("length")
        settings["doc_maxlen"] = data.get("document_length")
    modules = json.loads((folder.path / "modules.json").read_text(encoding="utf-8"))
    for module in modules:
        if module["type"].endswith(".Dense"):
            dense = folder.path / module["path"] / "config.json"
            if dense.is_file():
                settings["dim"] = json.loads(dense.read_text(encoding="utf-8")).get("out_features")
                settings["dense_path"] = module["path"]
    return settings

