"""Is this photo like any the model was trained on? Nearest neighbours in embedding space.

A classifier always picks one of its classes, even for a photo of a coffee
cup. Before trusting its answer, compare the photo's frozen ImageNet
embedding (core.models.embeddings) with the training photos': the mean
cosine distance to the ``k`` nearest. The threshold comes from the training
photos themselves: each one's distance to its own nearest neighbours (itself
left out), and the ``quantile`` of those, so about 1% of photos like the
training ones would be called unknown.

    detector = NoveltyDetector.fit(train_embeddings)
    detector.save(run_dir / "novelty.npz")
    unknown = NoveltyDetector.load(path).is_unknown(embeddings)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fileio import atomic_write

# novelty.npz files written before the size was recorded embedded at 224 px.
LEGACY_IMAGE_SIZE = 224

NEIGHBOURS = 5
QUANTILE = 0.995  # of training photos' own distances: the "still looks familiar" edge


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _mean_distance(queries: np.ndarray, reference: np.ndarray, k: int, skip_self: bool) -> np.ndarray:
    similarity = queries @ reference.T  # cosine: both sides are unit vectors
    first = 1 if skip_self else 0
    nearest = -np.sort(-similarity, axis=1)[:, first : first + k]
    return 1.0 - nearest.mean(axis=1)


@dataclass
class NoveltyDetector:
    reference: np.ndarray  # unit-length training embeddings
    threshold: float  # mean distance above which a photo is unknown
    k: int = NEIGHBOURS
    image_size: int = LEGACY_IMAGE_SIZE  # px the photos are resized to before embedding

    @classmethod
    def fit(
        cls,
        train_embeddings: np.ndarray,
        image_size: int,
        k: int = NEIGHBOURS,
        quantile: float = QUANTILE,
    ) -> NoveltyDetector:
        """``image_size``: the size the embeddings were taken at; photos checked later must use it too."""
        reference = _unit(train_embeddings)
        k = max(1, min(k, len(reference) - 1))
        own = _mean_distance(reference, reference, k, skip_self=True)
        return cls(reference, float(np.quantile(own, quantile)), k, int(image_size))

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        return _mean_distance(_unit(embeddings), self.reference, self.k, skip_self=False)

    def is_unknown(self, embeddings: np.ndarray, threshold: float | None = None) -> np.ndarray:
        return self.distance(embeddings) > (self.threshold if threshold is None else threshold)

    def save(self, path: str | Path) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            reference=self.reference.astype(np.float16),
            threshold=self.threshold,
            k=self.k,
            image_size=self.image_size,
        )
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> NoveltyDetector:
        with np.load(path) as stored:
            image_size = int(stored["image_size"]) if "image_size" in stored.files else LEGACY_IMAGE_SIZE
            return cls(stored["reference"].astype(np.float32), float(stored["threshold"]), int(stored["k"]), image_size)
