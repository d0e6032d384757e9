"""tf.data input pipelines: from file paths to batches of images and labels.

    paths -> parallel decode + resize (core.data.images, the same code inference
    uses) -> cache decoded uint8 -> seeded shuffle -> batch -> augmentation
    (Keras preprocessing layers, on the CPU, in the pipeline) -> prefetch

Decoding happens once: later epochs read decoded images from the cache, in
memory when they fit, on disk otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from core.data.augment import AugmentConfig, build_augmentation
from core.data.dataset import Sample
from core.data.images import load_resized
from core.defaults import SEED

# Decoded images bigger than this go to a disk cache instead of memory.
MEMORY_CACHE_BYTES = 4 * 1024**3


def _decode(path: tf.Tensor, image_size: int) -> tf.Tensor:
    def load(path_bytes):
        return load_resized(path_bytes.decode(), image_size)

    image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    image.set_shape((image_size, image_size, 3))
    return image


def decoded_images(samples: list[Sample], image_size: int, cache_file: str | Path | None = None) -> tf.data.Dataset:
    """Unbatched (uint8 image, int32 label) pairs, decoded once and cached."""
    paths = [s.path for s in samples]
    labels = np.array([s.label for s in samples], dtype=np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(
        lambda path, label: (_decode(path, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    decoded_bytes = len(samples) * image_size * image_size * 3
    if cache_file is not None and decoded_bytes > MEMORY_CACHE_BYTES:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        return dataset.cache(str(cache_file))
    return dataset.cache()


def make_dataset(
    samples: list[Sample],
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = SEED,
    augment: AugmentConfig | None = None,
    cache_file: str | Path | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], int32 labels).

    ``training`` shuffles (seeded, reshuffled each epoch) and applies
    ``augment``; evaluation keeps file order so results line up with files.
    """
    if not samples:
        raise ValueError("No images to build a dataset from.")
    dataset = decoded_images(samples, image_size, cache_file)
    if training:
        dataset = dataset.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=tf.data.AUTOTUNE
    )
    if training and augment is not None and not augment.is_identity:
        augmentation = build_augmentation(augment, seed=seed)
        dataset = dataset.map(
            lambda images, labels: (augmentation(images, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
