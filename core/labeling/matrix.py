"""A dataset's embeddings in one file, so a labelling round reads one file, not one per photo.

The embedding cache (core.models.embeddings) keeps one ``.npy`` per photo;
reading 2000 of them costs 2.4 s on a busy 2-core machine (numpy parses each
header), a labelling round's whole budget. The labeller keeps the matrix of
the photos it last saw, by content key, in
``PAWLAB_HOME/cache/labeling/<dataset>.npz``; a round reads it, asks
embed_files only for photos not in it (new ones: computed once, cached as
ever), and writes it back when that changed anything.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.config import get_settings
from core.fileio import atomic_write
from core.models.embeddings import EMBEDDING_SIZE, embed_files

MATRIX_FOLDER = "labeling"


def matrix_file(root: Path) -> Path:
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return get_settings().cache_dir / MATRIX_FOLDER / f"{key}-{EMBEDDING_SIZE}px.npz"


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as stored:
            return dict(zip(stored["keys"].tolist(), stored["vectors"]))
    except (OSError, ValueError, KeyError):
        return {}  # missing or damaged: the per-photo cache rebuilds it


def _write(path: Path, vectors: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array(list(vectors)), vectors=np.stack(list(vectors.values())).astype(np.float16))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
    except OSError:
        pass  # a cache: a full or read-only disk costs the slower read next round


def dataset_embeddings(root: Path, paths: Sequence[str], keys: Sequence[str]) -> np.ndarray:
    """(N, 1280) float32 embeddings of ``paths`` (content ``keys`` as the scan found them), in order."""
    path = matrix_file(root)
    known = _read(path)
    missing = [index for index, key in enumerate(keys) if key not in known]
    if missing:
        computed = embed_files([paths[index] for index in missing], keys=[keys[index] for index in missing])
        known.update((keys[index], vector) for index, vector in zip(missing, computed))
    wanted = {key: known[key] for key in keys}
    if missing or len(wanted) != len(known):  # new photos, or photos gone: keep only this dataset's
        _write(path, wanted)
    if not keys:
        return np.zeros((0, 1280), np.float32)
    return np.stack([wanted[key] for key in keys]).astype(np.float32)
