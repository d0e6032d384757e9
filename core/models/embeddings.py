"""Per-photo embeddings of the frozen ImageNet backbone, cached by file content.

The data doctor (core.review), transfer runs and the unknown-photo check all
need the same thing: MobileNetV2's pooled 1280 numbers for a photo. They are
kept per photo, keyed by the photo's bytes (sha256), the backbone and the
image size, so a renamed or moved photo is not recomputed, a relabelled
photo costs nothing, and a new photo costs only its own forward pass.

    embeddings = embed_files(paths, progress=print)  # (N, 1280) float32, at EMBEDDING_SIZE

The cache lives under ``PAWLAB_HOME/cache/embeddings/<backbone>-<size>px/``,
one small ``.npy`` file per photo, written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.config import get_settings
from core.fileio import atomic_write, file_sha256

BACKBONE = "mobilenet_v2-imagenet"
# The architecture whose frozen extractor ends in global pooling (1280 numbers).
POOLED_ARCH = "mobilenet_v2_finetune"
EXTRACT_BATCH = 64
# The size every embedding is taken at: the ImageNet weights' own 224 px, the
# transfer recipe's size. Measured on the doctor's planted test (tests/_planted.py,
# cleanlab's outlier score): all 10 strangers rank in the top 15 at 224 px,
# 9 at 160 px (the astronaut 19th, behind real logos and signs).
EMBEDDING_SIZE = 224
# The smallest size at which a transfer run's own cached features, averaged over
# their grid, serve as its unknown-photo check's embeddings (no second pass at
# EMBEDDING_SIZE). Measured 2026-12-02 on 2000 training photos at 160 px: all 10
# strangers of tests/_planted.py flagged (10/10 at 224 px too), 0.9% of 1000
# validation pets wrongly flagged (1.3% at 224 px). Smaller sizes were not measured.
RUN_FEATURES_MIN_SIZE = 160

Progress = Callable[[int, int], None]  # (photos done, photos in total)


def content_key(path: str | Path) -> str:
    """sha256 of the file's bytes: the same photo anywhere has the same key."""
    return file_sha256(path)


def content_keys(paths: Sequence[str | Path]) -> list[str]:
    # Hashing reads files and releases the GIL: threads overlap the disk reads.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(content_key, paths))


class EmbeddingCache:
    """One folder of ``<key>.npy`` files per backbone and image size."""

    def __init__(self, image_size: int, backbone: str = BACKBONE, root: Path | None = None):
        root = root or get_settings().cache_dir / "embeddings"
        self.folder = Path(root) / f"{backbone}-{image_size}px"

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        try:
            return np.load(self._path(key))
        except (OSError, ValueError):
            return None  # missing or damaged: compute again

    def put(self, key: str, embedding: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(embedding, dtype=np.float16))
        atomic_write(path, buffer.getvalue())


def pooled(features: np.ndarray) -> np.ndarray:
    """(N, 1280) embeddings of a frozen base's features: a grid is averaged, as the extractor pools."""
    features = np.asarray(features, dtype=np.float32)
    return features.mean(axis=(1, 2)) if features.ndim == 4 else features


def pooled_extractor(image_size: int):
    """The frozen MobileNetV2, globally pooled: images in [0, 255] -> 1280 numbers."""
    from core.models.zoo import build_frozen_parts

    extractor, _ = build_frozen_parts(POOLED_ARCH, num_classes=2, image_size=image_size)
    return extractor


def _compute(paths: list[str], image_size: int, on_batch: Callable[[int], None]) -> np.ndarray:
    """Forward passes for ``paths``, decoded by the pipeline training uses, in ONNX Runtime when it can."""
    from core.data.dataset import Sample
    from core.data.pipeline import make_dataset
    from core.models.onnx_base import fast_base

    extractor = fast_base(pooled_extractor(image_size))
    samples = [Sample(path, 0, "") for path in paths]
    dataset = make_dataset(samples, image_size, EXTRACT_BATCH, training=False)
    batches = []
    for images, _ in dataset:
        batches.append(np.asarray(extractor.predict_on_batch(images), dtype=np.float32))
        on_batch(len(batches[-1]))
    return np.concatenate(batches)


def embed_files(
    paths: Sequence[str | Path],
    image_size: int = EMBEDDING_SIZE,
    progress: Progress | None = None,
    keys: Sequence[str] | None = None,
) -> np.ndarray:
    """(N, 1280) float32 embeddings of ``paths``, in order; cached ones are not recomputed.

    ``keys``: the files' content keys when the caller has them already.
    """
    files = [str(path) for path in paths]
    keys = list(keys) if keys is not None else content_keys(files)
    cache = EmbeddingCache(image_size)
    cached: list[np.ndarray | None] = [cache.get(key) for key in keys]
    missing = [index for index, vector in enumerate(cached) if vector is None]
    done = len(files) - len(missing)
    if progress is not None:
        progress(done, len(paths))

    if missing:

        def on_batch(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, len(files))

        computed = _compute([files[index] for index in missing], image_size, on_batch)
        for index, vector in zip(missing, computed):
            cache.put(keys[index], vector)
            cached[index] = vector
    if not files:
        return np.zeros((0, 1280), np.float32)
    return np.stack([vector for vector in cached if vector is not None]).astype(np.float32)  # all filled now
