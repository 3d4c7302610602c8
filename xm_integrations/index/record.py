"""What an index records about the encoder that built it, and the check that refuses another one.

Vectors from two encoders are not comparable even when their shapes agree: another checkpoint,
another projection, other markers or query lengths give scores that mean nothing against the
stored documents. So an index keeps an :class:`IndexModelRecord` next to its vectors (written in
the same commit as the table) and every encoder that searches or extends it must match it. The
``fingerprint`` (a hash of the final projection's weights, rounded to float16 so that the model's
dtype does not matter) tells two checkpoints apart when everything else agrees, and lets the same
checkpoint loaded from the Hub or from a local copy pass even though its name differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from xm_integrations.errors import IndexFormatError, IndexModelMismatchError

__all__ = ["FORMAT_VERSION", "IndexModelRecord"]

#: Version of the on-disk layout; an index of a newer version is refused, not misread.
FORMAT_VERSION = 1

#: Fields compared between an index and an encoder (the name and revision are informative only).
_COMPARED = ("dim", "query_maxlen", "doc_maxlen", "query_marker_id", "doc_marker_id", "mask_token_id",
             "attend_to_mask_tokens", "similarity_fn_name", "languages", "fingerprint")


@dataclass(frozen=True)
class IndexModelRecord:
    """The encoder an index was built with.

    Attributes:
        dim: Token vector dimension (the only field an index of precomputed vectors must have).
        name_or_path: Hub repo id or local folder of the checkpoint, when known.
        revision: Hub revision the checkpoint was loaded at, when known.
        query_maxlen / doc_maxlen: colbert-ai's lengths (queries are padded to ``query_maxlen``).
        query_marker_id / doc_marker_id / mask_token_id: Token ids colbert-ai inserts.
        attend_to_mask_tokens: Whether query ``<mask>`` padding is attended to.
        similarity_fn_name: ``"maxsim"`` or ``"meanmaxsim"``.
        languages: The checkpoint's adapter codes, in adapter order (their ids are ``lang_ids``).
        fingerprint: SHA-256 of the last projection's weights as float16.
    """

    dim: int
    name_or_path: str | None = None
    revision: str | None = None
    query_maxlen: int | None = None
    doc_maxlen: int | None = None
    query_marker_id: int | None = None
    doc_marker_id: int | None = None
    mask_token_id: int | None = None
    attend_to_mask_tokens: bool | None = None
    similarity_fn_name: str | None = None
    languages: tuple[str, ...] | None = None
    fingerprint: str | None = None

    @classmethod
    def from_model(cls, model: Any) -> IndexModelRecord:
        """The record of a loaded :class:`~xm_integrations.ColBERTXM` (or any ColBERT-style encoder with the same attributes)."""
        encoding = getattr(model, "colbert_encoding", None)
        card = getattr(model, "model_card_data", None)
        transformer = model[0] if len(model) else None
        config = getattr(getattr(transformer, "auto_model", None), "config", None)
        name = getattr(card, "base_model", None) or getattr(config, "_name_or_path", None)
        if name and os.path.isdir(name):  # a local folder: absolute, so that the index finds it from anywhere
            name = os.path.abspath(name)
        languages = getattr(model, "languages", None)
        return cls(
            dim=int(model.get_embedding_dimension()),
            name_or_path=str(name) if name else None,
            revision=getattr(card, "base_model_revision", None),
            query_maxlen=getattr(encoding, "query_maxlen", None),
            doc_maxlen=getattr(encoding, "doc_maxlen", None),
            query_marker_id=getattr(encoding, "query_marker_id", None),
            doc_marker_id=getattr(encoding, "doc_marker_id", None),
            mask_token_id=getattr(encoding, "mask_token_id", None),
            attend_to_mask_tokens=getattr(encoding, "attend_to_mask_tokens", None),
            similarity_fn_name=getattr(model, "similarity_fn_name", None),
            languages=tuple(languages) if languages is not None else None,
            fingerprint=_projection_fingerprint(model),
        )

    def check_compatible(self, other: IndexModelRecord, path: str) -> None:
        """Raise unless vectors of the encoder ``other`` describes can be compared with this index's.

        A field the index does not record (``None``: an index of precomputed vectors) is not
        compared; ``dim`` always is.

        Raises:
            IndexModelMismatchError: listing every field that differs.
        """
        differences = [
            (name, getattr(self, name), getattr(other, name))
            for name in _COMPARED
            if getattr(self, name) is not None and getattr(self, name) != getattr(other, name)
        ]
        if differences:
            raise IndexModelMismatchError(path, differences)

    def to_json(self) -> str:
        """The record with the format version, as stored in the index."""
        return json.dumps({"format_version": FORMAT_VERSION, "model": asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, path: str) -> IndexModelRecord:
        """Parse what :meth:`to_json` wrote.

        Raises:
            IndexFormatError: not a record, or one of a newer format version.
        """
        try:
            payload = json.loads(text)
            version, model = payload["format_version"], dict(payload["model"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{path}: the index's model record is unreadable ({exc}); the folder is corrupt.") from exc
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFormatError(f"{path}: index format {version!r} is newer than this xm-integrations reads "
                                   f"({FORMAT_VERSION}); upgrade xm-integrations.")
        known = {field.name for field in fields(cls)}
        if "dim" not in model:
            raise IndexFormatError(f"{path}: the index's model record has no dim; the folder is corrupt.")
        if model.get("languages") is not None:
            model["languages"] = tuple(model["languages"])
        return cls(**{key: value for key, value in model.items() if key in known})


def _projection_fingerprint(model: Any) -> str | None:
    """SHA-256 of the weight of the model's last linear projection (a Dense module), as float16 bytes."""
    import torch

    modules = list(model)
    weight = next(
        (parameter for module in reversed(modules[1:]) for _, parameter in module.named_parameters()
         if parameter.dim() == 2),
        None,
    )  # the projection after the transformer (ColBERT's linear layer), not the transformer's own weights
    if weight is None:
        return None
    data = weight.detach().to(device="cpu", dtype=torch.float16).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()
