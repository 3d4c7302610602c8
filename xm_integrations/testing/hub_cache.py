"""Place a local checkpoint into a Hugging Face hub cache, as if it had been downloaded.

With ``HF_HUB_CACHE`` pointing at the cache and ``HF_HUB_OFFLINE=1``, loading by repo id then goes
through huggingface_hub's real resolution (``refs/<revision>`` to a commit, ``snapshots/<commit>/``
to content-addressed ``blobs/``), which is the code path users hit after a first download.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub.constants import HF_HUB_CACHE

from xm_integrations.errors import InputFileNotFoundError

__all__ = ["populate_hub_cache"]


def _git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub) gives a small file's blob; the Hub names LFS blobs by sha256 instead."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def populate_hub_cache(
    checkpoint: str | Path,
    repo_id: str,
    cache_dir: str | Path | None = None,
    revision: str = "main",
) -> Path:
    """Copy ``checkpoint`` into the hub cache under ``repo_id`` and point ``revision`` at it.

    The commit hash is derived from the files' contents, so the same checkpoint always lands in the
    same snapshot and repeating the call is harmless.

    Args:
        checkpoint: A local model folder (flat, as ``save_pretrained`` writes it).
        repo_id: The Hub id to file it under, e.g. ``"antoinelouis/mono-xm"``.
        cache_dir: The hub cache; huggingface_hub's ``HF_HUB_CACHE`` when omitted.
        revision: The branch name whose ref is written.

    Returns:
        The snapshot folder.
    """
    checkpoint = Path(checkpoint)
    cache_dir = Path(cache_dir or HF_HUB_CACHE)
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
    if not files:
        raise InputFileNotFoundError(f"{checkpoint} holds no files to place in the hub cache")
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    listing = hashlib.sha1()
    blob_ids = {}
    for file in files:
        data = file.read_bytes()
        blob_id = hashlib.sha256(data).hexdigest() if len(data) > 10_000_000 else _git_blob_sha1(data)
        blob_ids[file] = blob_id
        listing.update(f"{file.relative_to(checkpoint).as_posix()}:{blob_id}\n".encode())
        blob = repo_dir / "blobs" / blob_id
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
    commit = listing.hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    for file, blob_id in blob_ids.items():
        link = snapshot / file.relative_to(checkpoint)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(repo_dir / "blobs" / blob_id, link.parent))
    ref = repo_dir / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot
