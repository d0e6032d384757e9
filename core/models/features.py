"""Features of a frozen ImageNet base, computed once and kept on disk.

With the base frozen and no augmentation, every epoch would push the same
images through the same frozen network. So the base runs once per image,
its outputs are saved as an .npz under the cache folder, and the head trains
on those numbers in seconds per epoch. A later run on the same images (same
cache key, image size, files and labels) loads them instead. The base runs
in ONNX Runtime when it converts (core.models.onnx_base: about twice as fast
on a CPU, the same numbers), in Keras otherwise.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from core.data.dataset import Sample
from core.data.images import Pixels
from core.fileio import atomic_write

log = logging.getLogger("pawlab.features")

Progress = Callable[[int, "int | None"], None]  # (images done, images in total)
# Hex digits of the samples' digest in a cache file name: plenty to never collide.
DIGEST_CHARS = 20


def extract_features(
    feature_extractor, dataset: Iterable, progress: Progress | None = None, total: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``feature_extractor`` over batches of (images, labels), in order.

    The dataset must not augment: cached features stand for the photos
    themselves. Features are stored as float16, half the memory and disk of
    float32 and plenty for a head trained on top.
    """
    features, labels = [], []
    done = 0
    for images, batch_labels in dataset:
        images = np.asarray(images, dtype=np.float32)  # pixels in [0, 255], decoded as uint8
        features.append(np.asarray(feature_extractor.predict_on_batch(images), dtype=np.float16))
        labels.append(np.asarray(batch_labels))
        done += len(labels[-1])
        if progress is not None:
            progress(done, total)
    if not features:
        raise ValueError("No images to extract features from.")
    return np.concatenate(features), np.concatenate(labels)


def _samples_digest(samples: list[Sample]) -> str:
    """Changes when a file is added, removed, relabelled or rewritten."""
    digest = hashlib.sha256()
    for sample in samples:
        try:
            stat = os.stat(sample.path)
            version = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            version = "missing"  # the pipeline will report it; the key just must not match
        digest.update(f"{sample.path}\0{sample.label}\0{version}\n".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def cache_path(
    cache_dir: Path, cache_key: str, image_size: int, samples: list[Sample], pixels: Pixels = Pixels.INFERENCE
) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cache_key).strip("_") or "features"
    return Path(cache_dir) / f"{slug}_{image_size}px_{pixels.value}_{_samples_digest(samples)}.npz"


def _load(path: Path, num_samples: int) -> tuple[np.ndarray, np.ndarray] | None:
    _wait_for_write(path)
    try:
        with np.load(path) as stored:
            features, labels = stored["features"], stored["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # missing or unreadable: compute again
    if len(features) != num_samples or len(labels) != num_samples:
        return None
    return features, labels


def _save(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    """Replace the cache file whole: a reader never sees half a file."""
    buffer = io.BytesIO()
    np.savez(buffer, features=features, labels=labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


# Cache files this process is writing in the background (cached_features' save_later), by path.
_writing: dict[Path, threading.Thread] = {}
_writing_lock = threading.Lock()


def _save_later(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    """_save in a thread of its own. Not a daemon: the file lands before the process ends.
    A failed write costs only speed (the next run computes the features again)."""

    def write() -> None:
        try:
            _save(path, features, labels)
        except OSError as error:
            log.warning("Feature cache %s not written: %s", path.name, error)
        finally:
            with _writing_lock:
                _writing.pop(path, None)

    thread = threading.Thread(target=write, name=f"save {path.name}")
    with _writing_lock:
        _writing[path] = thread
    thread.start()


def _wait_for_write(path: Path) -> None:
    with _writing_lock:
        thread = _writing.get(path)
    if thread is not None:
        thread.join()


def cached_features(
    feature_extractor,
    samples: list[Sample],
    image_size: int,
    batch_size: int,
    cache_key: str,
    cache_dir: Path,
    progress: Progress | None = None,
    pixels: Pixels = Pixels.INFERENCE,
    batches: Iterable | None = None,
    save_later: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) for ``samples``, from the cache when it has them.

    ``cache_key`` names what produced the features (architecture, weights):
    a different extractor must use a different key. ``pixels`` is how the
    photos decode, part of the key too. ``batches``: the samples already
    decoding (core.data.decode_ahead), as core.data.pipeline.decoded_batches
    makes them; by default they decode here. ``save_later``: return before
    the cache file is written (a run's first epoch need not wait for the disk);
    a later call in this process waits for it.
    """
    path = cache_path(cache_dir, cache_key, image_size, samples, pixels)
    cached = _load(path, len(samples))
    if cached is not None:
        if progress is not None:
            progress(len(samples), len(samples))
        return cached

    from core.data.pipeline import decoded_batches
    from core.models.onnx_base import fast_base

    base = fast_base(feature_extractor)  # converted before the first batch is asked for
    if batches is None:
        batches = decoded_batches(samples, image_size, batch_size, pixels)
    features, labels = extract_features(base, batches, progress, total=len(samples))
    (_save_later if save_later else _save)(path, features, labels)
    return features, labels
