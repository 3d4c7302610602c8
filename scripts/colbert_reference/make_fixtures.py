"""Reference ColBERT-XM encodings computed by colbert-ai 0.2.22 itself, for the equivalence tests.

Runs INSIDE the colbert-ai reference venv (``setup_env.sh``: torch 2.13 CPU, transformers 4.48,
colbert-ai 0.2.22), never in our package's environment::

    /tmp/colbert-ref-venv/bin/python scripts/colbert_reference/make_fixtures.py \
        CHECKPOINT_DIR OUT_DIR [--languages fr_XX de_DE zh_CN] [--texts texts.json] \
        [--query-maxlen N] [--doc-maxlen N] [--attend-to-mask-tokens true|false] [--stem NAME] \
        [--checkpoint-info '{"function": ..., "kwargs": {...}}']

The ColBERT settings come from the checkpoint's artifact.metadata unless overridden; overrides are
recorded under ``config.overrides`` in the JSON (a test must pass the same ones).
Besides colbert-ai's outputs, the script re-encodes everything with plain transformers following
NOTES.md and asserts agreement to 1e-5, so the notes are known to be complete.

For every language it sets the XMOD adapter on the encoder colbert-ai loaded
(``checkpoint.bert.set_default_language(lang)``: colbert-ai itself never sets one), then runs
``Checkpoint.queryFromText(queries)`` and ``Checkpoint.docFromText(docs, keep_dims=False)``
(per-document vectors with pad and punctuation-skiplist positions dropped). It writes

* ``OUT_DIR/colbert_ai_reference.npz`` (``--stem`` changes the name): float32/int64 arrays, no pickle
  (``np.load(path)`` with the default ``allow_pickle=False`` reads it);
* ``OUT_DIR/colbert_ai_reference.json``: texts, languages, the ColBERT config used, the exact
  token ids and attention masks colbert-ai fed the model, the skiplist, library versions, and
  ``checkpoint_info`` (how to rebuild the checkpoint) plus sha256 of its files.

See NOTES.md next to this file for what colbert-ai does and why.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

# Nothing here may touch the network: the checkpoint is local. Also keeps
# ColBERTConfig.load_from_checkpoint's hf_hub_download attempt from waiting on a connection.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_STEM = "colbert_ai_reference"
FORMAT_VERSION = 1

DEFAULT_LANGUAGES = ["fr_XX", "de_DE", "zh_CN"]


def _long_query() -> str:
    # Well past query_maxlen (32 by default) in any reasonable tokenizer: exercises truncation,
    # which keeps </s> as the last token (HF truncation, then the marker is inserted).
    return (
        "Combien de caféine contient une tasse de thé vert par rapport à une tasse de café, et "
        "est-ce que la photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucre "
        "et en oxygène dans la plus grande forêt tropicale du monde, l'Amazonie, près de Paris ?"
    )


def _long_document() -> str:
    # Well past doc_maxlen (256 by default): every French/German/English sample sentence, 4 times.
    sentences = [
        "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889.",
        "La photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucre et en oxygène.",
        "L'Amazonie est la plus grande forêt tropicale du monde.",
        "Une tasse de thé vert contient moins de caféine qu'une tasse de café.",
        "Der Eiffelturm wurde für die Weltausstellung 1889 in Paris gebaut.",
        "Die Photosynthese wandelt Sonnenlicht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
        "The Amazon is the largest rainforest on Earth and produces much of its oxygen.",
    ]
    return " ".join(sentences * 4)


DEFAULT_TEXTS = {
    "queries": [
        "Combien de caféine dans le thé vert ?",
        "Was ist Photosynthese?",
        "光合作用",
        _long_query(),
    ],
    "query_kinds": ["short_fr", "short_de", "short_zh", "longer_than_query_maxlen"],
    "documents": [
        "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889.",
        "Der Amazonas-Regenwald ist der größte tropische Regenwald der Erde.",
        "光合作用把阳光、水和二氧化碳转化为糖和氧气。",
        "!!! ... ,,, ;;; ??? (Paris) -- \"thé\" [1889] {café} @#$%&*+/<=>\\^_`|~ :-) 'eau'.",
        _long_document(),
    ],
    "document_kinds": ["ordinary_fr", "ordinary_de", "ordinary_zh", "punctuation_heavy", "longer_than_doc_maxlen"],
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("colbert-ai", "torch", "transformers", "tokenizers", "numpy", "safetensors", "sentencepiece"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def load_checkpoint(checkpoint_dir: Path, overrides: dict):
    """colbert-ai's own loading path: ``Checkpoint(name, colbert_config=ColBERTConfig(...))``.

    ``model_name`` is forced to the checkpoint folder: ``BaseColBERT.__init__`` picks the backbone
    class with ``class_factory(colbert_config.model_name or name)``, and the ``model_name`` stored
    in ``artifact.metadata`` (a Hub id, or the folder's bare name in the tiny builder) cannot be
    resolved offline; the folder's own config.json (model_type "xmod") gives the same classes.
    """
    from colbert.infra.config import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    config = ColBERTConfig(model_name=str(checkpoint_dir), **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.cuda.amp on a CPU-only machine
        checkpoint = Checkpoint(str(checkpoint_dir), colbert_config=config, verbose=0)
    checkpoint.eval()
    return checkpoint


def independent_encoding(checkpoint_dir: Path, encoder_dir: Path, config, queries, documents, language):
    """The encoding as NOTES.md describes it, with plain transformers (no colbert-ai code).

    Used as a self-check that the notes are complete: it must reproduce colbert-ai to 1e-5.
    """
    import string

    from safetensors.torch import load_file
    from transformers import AutoTokenizer, XmodModel

    tok = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    q_marker = tok.convert_tokens_to_ids(config.query_token_id)  # "[unused0]" -> unk id
    d_marker = tok.convert_tokens_to_ids(config.doc_token_id)  # "[unused1]" -> unk id
    encoder = XmodModel.from_pretrained(str(encoder_dir), add_pooling_layer=False)
    encoder.set_default_language(language)
    encoder.eval()
    linear = load_file(str(checkpoint_dir / "model.safetensors"))["linear.weight"]

    def insert(t, value):
        return torch.cat([t[:, :1], torch.full((t.size(0), 1), value, dtype=t.dtype), t[:, 1:]], dim=1)

    with torch.inference_mode():
        enc = tok(queries, padding="max_length", truncation=True, max_length=config.query_maxlen - 1, return_tensors="pt")
        ids, mask = insert(enc["input_ids"], q_marker), insert(enc["attention_mask"], 1)
        ids[ids == tok.pad_token_id] = tok.mask_token_id
        if config.attend_to_mask_tokens:
            mask[ids == tok.mask_token_id] = 1
        Q = torch.nn.functional.normalize(encoder(input_ids=ids, attention_mask=mask)[0] @ linear.T, p=2, dim=2)

        enc = tok(documents, padding="longest", truncation="longest_first", max_length=config.doc_maxlen - 1,
                  return_tensors="pt")
        ids, mask = insert(enc["input_ids"], d_marker), insert(enc["attention_mask"], 1)
        skip = {tok.encode(symbol, add_special_tokens=False)[0] for symbol in string.punctuation}
        skip = skip if config.mask_punctuation else set()
        keep = torch.tensor([[(x not in skip) and (x != tok.pad_token_id) for x in row] for row in ids.tolist()])
        D = torch.nn.functional.normalize(encoder(input_ids=ids, attention_mask=mask)[0] @ linear.T, p=2, dim=2)
        D = torch.cat([d[k] for d, k in zip(D, keep)])
    return Q, D


def _write_encoder_only(checkpoint_dir: Path, scratch: Path) -> None:
    """A plain XmodModel checkpoint (``roberta.`` prefix stripped) for ``independent_encoding``."""
    from safetensors.torch import load_file, save_file

    scratch.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(checkpoint_dir / "model.safetensors"))
    encoder = {k[len("roberta."):]: v for k, v in tensors.items() if k.startswith("roberta.")}
    save_file(encoder, str(scratch / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((checkpoint_dir / "config.json").read_text())
    config["architectures"] = ["XmodModel"]
    (scratch / "config.json").write_text(json.dumps(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="HF_ColBERT checkpoint folder (artifact.metadata, config.json, ...)")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--languages", nargs="+", default=DEFAULT_LANGUAGES, help="XMOD adapter codes")
    parser.add_argument("--texts", type=Path, help="JSON with 'queries' and 'documents' lists (default: built-in set)")
    parser.add_argument("--query-maxlen", type=int, help="override artifact.metadata's query_maxlen")
    parser.add_argument("--doc-maxlen", type=int, help="override artifact.metadata's doc_maxlen")
    parser.add_argument("--attend-to-mask-tokens", choices=["true", "false"],
                        help="override artifact.metadata's attend_to_mask_tokens")
    parser.add_argument("--stem", default=DEFAULT_STEM, help="output file names: STEM.npz and STEM.json")
    parser.add_argument("--checkpoint-info", default="null",
                        help="JSON recorded verbatim: how the checkpoint was built (builder function, kwargs)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.set_default_dtype(torch.float32)

    checkpoint_dir = args.checkpoint.resolve()
    npz_name, json_name = f"{args.stem}.npz", f"{args.stem}.json"
    texts = json.loads(args.texts.read_text()) if args.texts else DEFAULT_TEXTS
    queries, documents = list(texts["queries"]), list(texts["documents"])
    overrides = {}
    if args.query_maxlen is not None:
        overrides["query_maxlen"] = args.query_maxlen
    if args.doc_maxlen is not None:
        overrides["doc_maxlen"] = args.doc_maxlen
    if args.attend_to_mask_tokens is not None:
        overrides["attend_to_mask_tokens"] = args.attend_to_mask_tokens == "true"

    checkpoint = load_checkpoint(checkpoint_dir, overrides)
    config = checkpoint.colbert_config
    assert next(checkpoint.parameters()).dtype == torch.float32
    assert checkpoint.device.type == "cpu", checkpoint.device
    encoder = checkpoint.bert  # the XmodModel: HF_ColBERT.LM == getattr(model, base_model_prefix="roberta")
    assert type(encoder).__name__ == "XmodModel", type(encoder)

    # Exactly what colbert-ai feeds the model (the tokenizers are language independent).
    q_ids, q_mask = checkpoint.query_tokenizer.tensorize(queries)
    d_ids, d_mask = checkpoint.doc_tokenizer.tensorize(documents)
    skiplist_ids = sorted(k for k in checkpoint.skiplist if isinstance(k, int)) if config.mask_punctuation else []
    d_kept = torch.tensor(checkpoint.mask(d_ids, skiplist=checkpoint.skiplist if config.mask_punctuation else []),
                          dtype=torch.bool)
    doc_lengths = d_kept.sum(-1)

    arrays: dict[str, np.ndarray] = {
        "query_input_ids": q_ids.numpy().astype(np.int64),
        "query_attention_mask": q_mask.numpy().astype(np.int64),
        "doc_input_ids": d_ids.numpy().astype(np.int64),
        "doc_attention_mask": d_mask.numpy().astype(np.int64),
        "doc_kept_mask": d_kept.numpy(),
        "doc_lengths": doc_lengths.numpy().astype(np.int64),
    }

    scratch = tempfile.TemporaryDirectory()
    encoder_dir = Path(scratch.name)
    _write_encoder_only(checkpoint_dir, encoder_dir)

    per_language = {}
    previous = None
    for language in args.languages:
        encoder.set_default_language(language)  # same config object as checkpoint.model.config
        assert checkpoint.model.config.default_language == language
        with torch.inference_mode():
            Q = checkpoint.queryFromText(queries).float().cpu()
            D_list = checkpoint.docFromText(documents, keep_dims=False)
            # Cross-checks on colbert-ai's other code paths (batched, length-sorted, flattened).
            D_flat, doclens = checkpoint.docFromText(documents, bsize=2, keep_dims="flatten")
            Q_batched = checkpoint.queryFromText(queries, bsize=3)
        D = torch.cat([d.float() for d in D_list])
        assert [len(d) for d in D_list] == doclens == doc_lengths.tolist(), (doclens, doc_lengths)
        torch.testing.assert_close(D_flat.float(), D, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(Q_batched.float(), Q, atol=1e-5, rtol=1e-5)
        assert Q.shape == (len(queries), config.query_maxlen, config.dim), Q.shape
        Q_ref, D_ref = independent_encoding(checkpoint_dir, encoder_dir, config, queries, documents, language)
        torch.testing.assert_close(Q_ref, Q, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(D_ref, D, atol=1e-5, rtol=1e-5)
        if previous is not None:
            assert not torch.allclose(previous, Q, atol=1e-3), "adapter switch had no effect"
        previous = Q
        arrays[f"{language}.query_embeddings"] = Q.numpy().astype(np.float32)
        arrays[f"{language}.doc_embeddings"] = D.numpy().astype(np.float32)  # (sum(doc_lengths), dim)
        per_language[language] = {
            "query_embeddings": f"{language}.query_embeddings",
            "doc_embeddings": f"{language}.doc_embeddings",
        }

    scratch.cleanup()

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / npz_name, **arrays)

    tok = checkpoint.raw_tokenizer
    qt, dt = checkpoint.query_tokenizer, checkpoint.doc_tokenizer
    record = {
        "format_version": FORMAT_VERSION,
        "generator": "scripts/colbert_reference/make_fixtures.py",
        "arrays_file": npz_name,
        "arrays": {
            "query_input_ids": "int64 [n_queries, query_maxlen]: ids after QueryTokenizer.tensorize",
            "query_attention_mask": "int64 [n_queries, query_maxlen]",
            "doc_input_ids": "int64 [n_docs, padded_len]: ids after DocTokenizer.tensorize (padding='longest')",
            "doc_attention_mask": "int64 [n_docs, padded_len]",
            "doc_kept_mask": "bool [n_docs, padded_len]: positions kept (not pad, not in skiplist)",
            "doc_lengths": "int64 [n_docs]: kept vectors per document",
            "<lang>.query_embeddings": "float32 [n_queries, query_maxlen, dim]: queryFromText",
            "<lang>.doc_embeddings": "float32 [sum(doc_lengths), dim]: docFromText(keep_dims=False), concatenated",
        },
        "languages": list(args.languages),
        "language_setting": "checkpoint.bert.set_default_language(lang)  # XmodModel; colbert-ai never sets it",
        "per_language": per_language,
        "queries": queries,
        "query_kinds": texts.get("query_kinds"),
        "documents": documents,
        "document_kinds": texts.get("document_kinds"),
        "config": {
            "query_maxlen": config.query_maxlen,
            "doc_maxlen": config.doc_maxlen,
            "dim": config.dim,
            "mask_punctuation": config.mask_punctuation,
            "attend_to_mask_tokens": config.attend_to_mask_tokens,
            "similarity": config.similarity,
            "query_token_id": config.query_token_id,
            "doc_token_id": config.doc_token_id,
            "overrides": overrides,
        },
        "tokenization": {
            "tokenizer_class": type(tok).__name__,
            "query_tokenizer_class": type(qt.tok).__name__,
            "doc_tokenizer_class": type(dt.tok).__name__,
            "query_marker_id": qt.Q_marker_token_id,
            "doc_marker_id": dt.D_marker_token_id,
            "unk_token_id": tok.unk_token_id,
            "cls_token_id": tok.cls_token_id,
            "sep_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
            "mask_token_id": tok.mask_token_id,
            "skiplist_ids": skiplist_ids,
            "skiplist_tokens": tok.convert_ids_to_tokens(skiplist_ids),
            "query_input_ids": q_ids.tolist(),
            "query_attention_mask": q_mask.tolist(),
            "query_tokens": [tok.convert_ids_to_tokens(row) for row in q_ids.tolist()],
            "doc_input_ids": d_ids.tolist(),
            "doc_attention_mask": d_mask.tolist(),
            "doc_tokens": [tok.convert_ids_to_tokens(row) for row in d_ids.tolist()],
            "doc_lengths": doc_lengths.tolist(),
        },
        "checkpoint_info": json.loads(args.checkpoint_info),
        "checkpoint_files_sha256": {
            path.name: _sha256(path) for path in sorted(checkpoint_dir.iterdir()) if path.is_file()
        },
        "tolerance": {"atol": 1e-5, "rtol": 1e-5},
        "device": "cpu",
        "dtype": "float32",
        "versions": _versions(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if argv is None else ["make_fixtures.py", *argv],
    }
    (args.out / json_name).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    total = sum((args.out / name).stat().st_size for name in (npz_name, json_name))
    print(f"wrote {args.out / npz_name} and {args.out / json_name} ({total / 1024:.0f} KiB), "
          f"languages={args.languages}, doc_lengths={doc_lengths.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
