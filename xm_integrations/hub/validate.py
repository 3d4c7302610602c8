"""Check, before publishing, that a model folder gives the same outputs in the stock libraries and in ours.

A card promises that ``CrossEncoder(repo)``, ``FlagReranker(repo)`` or ``MultiVectorEncoder(repo)``
work as they are. This module loads the folder with those stock classes and with
:class:`~xm_integrations.MonoXM` / :class:`~xm_integrations.ColBERTXM`, runs a few inputs in several
languages through both, and reports the largest difference. For other languages than the default,
the stock model gets the exact adapter code (``set_default_language``) and ours a per-input
language list, so per-input routing is checked too.

Typical failures it catches: a folder without ``default_language`` (stock loaders then fail with
"Input language unknown"), and a raw colbert-ai ``HF_ColBERT`` checkpoint, whose stock encoding
differs from colbert-ai's (it must be converted first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xm_integrations.errors import ValidationError
from xm_integrations.hub.model_folder import ModelFolder, ModelKind, read_model_folder
from xm_integrations.languages.resolution import language_to_iso
from xm_integrations.models.checkpoints import CheckpointFiles, check_transformer_tokenizer

__all__ = [
    "DEFAULT_TOLERANCE",
    "Check",
    "ValidationError",
    "ValidationReport",
    "differing_inputs",
    "failure_hint",
    "max_difference",
    "probe_languages",
    "probe_texts",
    "validate_model_folder",
]

logger = logging.getLogger(__name__)

#: Largest absolute difference accepted between stock and our outputs (scores or unit-vector entries).
DEFAULT_TOLERANCE = 1e-4

# Short texts in several scripts; languages the checkpoint lacks are skipped. They avoid characters
# that are rare enough to be <unk> in small vocabularies: FlagEmbedding 1.4 on transformers 5 decodes
# and re-tokenizes ids, so an <unk> tokenizes differently there than in sentence-transformers.
_PROBES: dict[str, tuple[str, str]] = {
    "fr": ("Quand la tour Eiffel a-t-elle été construite ?",
           "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889."),
    "de": ("Was ist Photosynthese?",
           "Die Photosynthese wandelt Sonnenlicht, Wasser und Kohlendioxid in Zucker und Sauerstoff um."),
    "zh": ("光合作用", "光合作用把阳光、水和二氧化碳转化为糖和氧气。"),
    "en": ("When was the Eiffel Tower built?", "The Eiffel Tower was built in Paris for the 1889 World's Fair."),
    "ar": ("برج إيفل", "بني برج إيفل في باريس للمعرض العالمي عام 1889."),
}


@dataclass
class Check:
    """One comparison: what was compared, the largest difference, and whether it is within tolerance."""

    name: str
    max_difference: float
    tolerance: float
    error: str | None = None
    differing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and self.max_difference <= self.tolerance

    def describe(self) -> str:
        if self.error is not None:
            return f"FAILED {self.name}: {self.error}"
        verdict = "ok" if self.passed else "MISMATCH"
        line = f"{verdict:8} {self.name}: max |difference| {self.max_difference:.2e} (tolerance {self.tolerance:.0e})"
        return "\n".join([line, *(f"         differs: {item}" for item in self.differing)])


@dataclass
class ValidationReport:
    """Every check run on a folder."""

    folder: Path
    kind: ModelKind
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def describe(self) -> str:
        return "\n".join(check.describe() for check in self.checks)


def probe_languages(folder: ModelFolder, limit: int = 3) -> list[str]:
    """The adapters to test: the default first, then others that have probe texts."""
    first = folder.default_language or folder.languages[0]
    others = [code for iso in _PROBES for code in folder.languages if code != first and language_to_iso(code) == iso]
    return [first, *others][:limit]


def probe_texts(code: str) -> tuple[str, str]:
    """A (query, passage) pair in the language of ``code`` (English when there is none)."""
    return _PROBES.get(language_to_iso(code), _PROBES["en"])


def max_difference(left: Sequence, right: Sequence) -> float:
    """Largest absolute difference between two lists of arrays; infinite when their shapes differ."""
    if len(left) != len(right):
        return float("inf")
    worst = 0.0
    for a, b in zip(left, right):
        a, b = np.asarray(_numpy(a), dtype=np.float64), np.asarray(_numpy(b), dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _numpy(value: object) -> object:
    detach = getattr(value, "detach", None)
    return detach().float().cpu().numpy() if detach is not None else value


def differing_inputs(left: Sequence, right: Sequence, labels: Sequence[str], tolerance: float) -> tuple[str, ...]:
    """``"LABEL: difference"`` for every aligned pair of outputs further apart than ``tolerance``."""
    if len(left) != len(right) or len(labels) != len(left):
        return ()
    return tuple(
        f"{label}: {difference:.2e}" for label, a, b in zip(labels, left, right)
        if (difference := max_difference([a], [b])) > tolerance
    )


def _run_check(report: ValidationReport, name: str, tolerance: float,
               compute: Callable[[], tuple[Sequence, Sequence]], labels: Sequence[str] = ()) -> None:
    """Run one comparison; ``labels`` name the outputs (one per input) so that a mismatch says which differ."""
    try:
        stock, ours = compute()
    except Exception as error:  # a stock loader that cannot run the folder is a failed check, not a crash
        report.checks.append(Check(name, float("inf"), tolerance, error=f"{type(error).__name__}: {error}"))
        return
    report.checks.append(Check(name, max_difference(stock, ours), tolerance,
                               differing=differing_inputs(stock, ours, labels, tolerance)))


def _labels(codes: Sequence[str], texts: Sequence[str]) -> list[str]:
    return [f"{code} {text[:40]!r}" for code, text in zip(codes, texts)]


_DEFAULT_LANGUAGE_CHECK = "default_language in config.json"


def _require_default_language(folder: ModelFolder, report: ValidationReport, tolerance: float) -> bool:
    if folder.default_language is not None:
        return True
    report.checks.append(Check(
        _DEFAULT_LANGUAGE_CHECK, float("inf"), tolerance,
        error="not set, so stock loaders fail with 'Input language unknown'",
    ))
    return False


def _validate_mono_xm(folder: ModelFolder, report: ValidationReport, tolerance: float, ours: Any = None) -> None:
    """Stock ``CrossEncoder`` against :class:`MonoXM`, stock ``FlagReranker`` against :class:`XMFlagReranker`.

    Like with like: FlagEmbedding 1.4 on transformers 5 decodes token ids back to text and tokenizes
    the pair again, which differs from one-pass pair tokenization wherever a piece does not
    round-trip (an ``<unk>``, some whitespace), so its scores are compared with our subclass of it,
    never with the sentence-transformers ones.
    """
    from sentence_transformers import CrossEncoder

    from xm_integrations.models.mono_xm import MonoXM

    path = str(folder.path)
    codes = probe_languages(folder)
    ours = ours if ours is not None else MonoXM(path)
    stock = CrossEncoder(path)
    pairs = [probe_texts(code) for code in codes]
    labels = _labels(codes, [passage for _, passage in pairs])

    def per_language(set_language: Callable[[str], None], predict: Callable[[list], Sequence],
                     predict_ours: Callable[[list, list[str]], Sequence]) -> Callable:
        def compute() -> tuple[list, list]:
            expected = []
            for code, pair in zip(codes, pairs):
                set_language(code)
                expected.append(float(np.asarray(predict([pair])).reshape(-1)[0]))
            return list(expected), list(np.asarray(predict_ours(pairs, list(codes)), dtype=np.float64))
        return compute

    _run_check(report, "sentence-transformers CrossEncoder vs MonoXM, default language", tolerance,
               lambda: (list(stock.predict(pairs, show_progress_bar=False)),
                        list(ours.predict(pairs, show_progress_bar=False))),
               labels=[f"{folder.default_language} {passage[:40]!r}" for _, passage in pairs])
    _run_check(report, f"CrossEncoder per adapter ({', '.join(codes)}) vs MonoXM with one language per pair",
               tolerance, per_language(stock.model.set_default_language,
                                       lambda batch: stock.predict(batch, show_progress_bar=False),
                                       lambda batch, languages: ours.predict(batch, language=languages,
                                                                             show_progress_bar=False)),
               labels=labels)
    try:
        from FlagEmbedding import FlagReranker

        from xm_integrations.integrations.flagembedding.reranker import XMFlagReranker
    except ImportError:
        logger.info("FlagEmbedding is not installed: skipping the FlagReranker comparison.")
        return
    flag = FlagReranker(path, use_fp16=False, devices="cpu")
    ours_flag = XMFlagReranker(path, use_fp16=False, devices="cpu")
    _run_check(report, f"FlagEmbedding FlagReranker per adapter ({', '.join(codes)}) vs XMFlagReranker", tolerance,
               per_language(flag.model.set_default_language,
                            lambda batch: flag.compute_score([list(pair) for pair in batch], normalize=True),
                            lambda batch, languages: ours_flag.compute_score(batch, language=languages,
                                                                             normalize=True)),
               labels=labels)


def _validate_colbert(folder: ModelFolder, report: ValidationReport, tolerance: float, ours: Any = None) -> None:
    from sentence_transformers import MultiVectorEncoder

    from xm_integrations.models.colbert_xm.model import ColBERTXM

    path = str(folder.path)
    codes = probe_languages(folder)
    ours = ours if ours is not None else ColBERTXM(path)
    stock = MultiVectorEncoder(path)
    queries = [probe_texts(code)[0] for code in codes]
    documents = [probe_texts(code)[1] for code in codes]
    xmod = stock[0].auto_model

    for task, texts in (("query", queries), ("document", documents)):
        encode_ours = ours.encode_query if task == "query" else ours.encode_document
        encode_stock = stock.encode_query if task == "query" else stock.encode_document

        def compute(texts: list[str] = texts, encode_ours=encode_ours, encode_stock=encode_stock) -> tuple[list, list]:
            expected = []
            for code, text in zip(codes, texts):
                xmod.set_default_language(code)
                expected.extend(encode_stock([text], show_progress_bar=False))
            return expected, list(encode_ours(texts, language=list(codes), show_progress_bar=False))

        _run_check(report, f"MultiVectorEncoder per adapter ({', '.join(codes)}) vs ColBERTXM, {task} vectors",
                   tolerance, compute, labels=_labels(codes, texts))


def _validate_xmod(folder: ModelFolder, report: ValidationReport, tolerance: float, ours: Any = None) -> None:
    """Other XMOD models: every probed adapter must run in stock transformers and match a per-input ``lang_ids`` batch."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = str(folder.path)
    codes = probe_languages(folder)
    classifier = any(arch.endswith("ForSequenceClassification") for arch in folder.config.get("architectures") or [])
    model = (AutoModelForSequenceClassification if classifier else AutoModel).from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = [probe_texts(code)[1] for code in codes]

    def output(features: dict, **kwargs: object) -> torch.Tensor:
        with torch.no_grad():
            result = model(**features, **kwargs)
        return result.logits if classifier else result.last_hidden_state

    def compute() -> tuple[list, list]:
        expected = []
        for code, text in zip(codes, texts):
            model.set_default_language(code)
            expected.append(output(tokenizer([text], return_tensors="pt"))[0])
        lang_ids = torch.tensor([list(folder.languages).index(code) for code in codes])
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        mixed = output(batch, lang_ids=lang_ids)
        lengths = batch["attention_mask"].sum(dim=1)
        return expected, [mixed[i] if classifier else mixed[i, : int(lengths[i])] for i in range(len(codes))]

    _run_check(report, f"transformers per adapter ({', '.join(codes)}) vs one batch with lang_ids", tolerance, compute,
               labels=_labels(codes, texts))


#: What to do when the folder has no default language, by layout.
_DEFAULT_LANGUAGE_HINTS = {
    ModelKind.COLBERT_AI: "Convert it with a default language: `xm-integrations convert MODEL_DIR OUT_DIR --language "
                          "LANG`, then push OUT_DIR.",
    ModelKind.COLBERT_XM: "Set a default language and save again (ColBERTXM(MODEL_DIR, language=LANG).save(OUT_DIR), or "
                          "`xm-integrations convert MODEL_DIR OUT_DIR --language LANG`), then push OUT_DIR.",
    ModelKind.MONO_XM: "Save it with a default language first: `xm-integrations convert MODEL_DIR OUT_DIR --language "
                       "LANG` (or MonoXM(MODEL_DIR, language=LANG).save(OUT_DIR)), then push OUT_DIR.",
    ModelKind.XMOD: "Set a default language (model.set_default_language(code); save_pretrained(...)), then push again.",
}

_CONVERT_COLBERT_AI = ("This is a raw colbert-ai checkpoint, which stock sentence-transformers does not encode as "
                       "colbert-ai did. Convert it first: `xm-integrations convert MODEL_DIR OUT_DIR --language LANG`, "
                       "then push OUT_DIR.")


def failure_hint(report: ValidationReport) -> str:
    """What to do about a failed report, said only where it applies to this folder and this failure.

    No default language: how to save one, for this layout. A raw colbert-ai checkpoint: convert it.
    A stock loader that failed: its error (in the report) is what to fix. Outputs that differ on a
    folder that loads everywhere: no advice would be right, so the differing inputs are listed and
    the likely causes named.
    """
    failed = [check for check in report.checks if not check.passed]
    if any(check.name == _DEFAULT_LANGUAGE_CHECK for check in failed):
        return _DEFAULT_LANGUAGE_HINTS[report.kind]
    if report.kind is ModelKind.COLBERT_AI:
        return _CONVERT_COLBERT_AI
    if any(check.error is not None for check in failed):
        return "A stock library could not load or run the folder: fix what its FAILED line above names, then push again."
    return ("The stock library and xm_integrations load this folder but score the inputs listed above differently. "
            "Check that the tokenizer files agree with each other (tokenizer.json and sentencepiece.bpe.model) and "
            "that the weights were not changed after saving; re-save the model with MonoXM/ColBERTXM .save() and "
            "validate again. If it persists, report it with this output.")


def validate_model_folder(model_dir: str | Path | ModelFolder, *, tolerance: float = DEFAULT_TOLERANCE,
                          raise_on_failure: bool = True, ours: Any = None) -> ValidationReport:
    """Compare the stock libraries with xm_integrations on a few multilingual inputs.

    Args:
        model_dir: The folder (or its :class:`ModelFolder`).
        tolerance: Largest absolute difference accepted.
        raise_on_failure: Raise :class:`ValidationError` instead of returning a failed report.
        ours: Our model to compare with (default: :class:`MonoXM`/:class:`ColBERTXM` loaded from the
            folder). Conversion passes the model loaded from the *source*, so that the check covers
            the conversion itself.

    Raises:
        ValidationError: a check failed (with ``raise_on_failure``); the message lists every check,
            the inputs that differ, and what to do where that is known.
        CheckpointError: the folder cannot work at all (no tokenizer files, no classification
            head, a multi-vector folder where a reranker was expected); the message names the file.
    """
    folder = model_dir if isinstance(model_dir, ModelFolder) else read_model_folder(model_dir)
    check_transformer_tokenizer(CheckpointFiles(str(folder.path)))  # without it every text would be <unk>
    report = ValidationReport(folder.path, folder.kind)
    if _require_default_language(folder, report, tolerance):
        if folder.kind is ModelKind.MONO_XM:
            _validate_mono_xm(folder, report, tolerance, ours)
        elif folder.kind in (ModelKind.COLBERT_XM, ModelKind.COLBERT_AI):
            _validate_colbert(folder, report, tolerance, ours)
        else:
            _validate_xmod(folder, report, tolerance, ours)
    if raise_on_failure and not report.passed:
        raise ValidationError(report, failure_hint(report))
    return report
