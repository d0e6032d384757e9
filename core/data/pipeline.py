"""tf.data input pipelines: from file paths to batches of images and labels.

    paths -> parallel decode + resize -> cache decoded uint8 -> seeded shuffle
    -> batch -> augmentation (Keras preprocessing layers, on the CPU, in the
    pipeline) -> prefetch

Which decoder reads a file is the dataset's ``Pixels``: photos a model is
scored on (validation, test, calibration) get the pixels inference gets, from
Pillow (core.data.images, the code the Classify page and the API use), so a
measured accuracy is the one a user sees; training photos get FAST pixels:
plain JPEGs through TensorFlow's decoder (core.data.native_decode, close to
Pillow's pixels at about half the CPU time), every other file through Pillow.
Decoding happens once: later epochs read decoded images from the cache, in
memory when they fit, on disk otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from core.data.augment import AugmentConfig, build_augmentation
from core.data.dataset import Sample
from core.data.images import Pixels, load_resized
from core.data.native_decode import PILLOW, DecodePlan, decode_jpeg_resized, plan_decodes
from core.defaults import SEED

# Decoded images bigger than this go to a disk cache instead of memory.
MEMORY_CACHE_BYTES = 4 * 1024**3


def _decode(path: tf.Tensor, image_size: int, plan: DecodePlan) -> tf.Tensor:
    if plan.native:
        return decode_jpeg_resized(tf.io.read_file(path), plan.ratio, plan.orientation, image_size)

    def load(path_bytes):
        return load_resized(path_bytes.decode(), image_size)

    image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    image.set_shape((image_size, image_size, 3))
    return image


def decoded_pixels(paths: list[str], image_size: int, pixels: Pixels) -> tf.data.Dataset:
    """Unbatched uint8 images of ``paths``, in order, each file by its decode plan.

    Files of one plan (a DCT ratio and an orientation, or Pillow) decode in one
    parallel map of their own; a selector interleaves them back into file order.
    """
    plans = plan_decodes(paths, image_size) if pixels == Pixels.FAST else [PILLOW] * len(paths)
    groups: dict[DecodePlan, list[int]] = {}
    for index, plan in enumerate(plans):
        groups.setdefault(plan, []).append(index)

    def group_images(plan: DecodePlan, indices: list[int]) -> tf.data.Dataset:
        group_paths = tf.data.Dataset.from_tensor_slices([paths[i] for i in indices])
        return group_paths.map(lambda path: _decode(path, image_size, plan), num_parallel_calls=tf.data.AUTOTUNE)

    datasets = [group_images(plan, indices) for plan, indices in groups.items()]
    if len(datasets) == 1:
        return datasets[0]
    group_of = np.empty(len(paths), dtype=np.int64)
    for group, indices in enumerate(groups.values()):
        group_of[indices] = group
    return tf.data.Dataset.choose_from_datasets(datasets, tf.data.Dataset.from_tensor_slices(group_of))


def decoded_images(
    samples: list[Sample],
    image_size: int,
    cache_file: str | Path | None = None,
    pixels: Pixels = Pixels.INFERENCE,
) -> tf.data.Dataset:
    """Unbatched (uint8 image, int32 label) pairs, decoded once and cached."""
    images = decoded_pixels([s.path for s in samples], image_size, pixels)
    labels = tf.data.Dataset.from_tensor_slices(np.array([s.label for s in samples], dtype=np.int32))
    dataset = tf.data.Dataset.zip(images, labels)
    decoded_bytes = len(samples) * image_size * image_size * 3
    if cache_file is not None and decoded_bytes > MEMORY_CACHE_BYTES:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        return dataset.cache(str(cache_file))
    return dataset.cache()


def decoded_batches(samples: list[Sample], image_size: int, batch_size: int, pixels: Pixels) -> tf.data.Dataset:
    """Batches of (uint8 images, int32 labels) in file order, for one pass: nothing cached.

    What a frozen base's feature pass reads (core.models.features), a quarter of
    the bytes of make_dataset's float32 batches while they wait to be read.
    Without tf.data's autotuning: one pass leaves it nothing to learn, and ending
    the iterator waited for its thread (0.6 s of a run's test step).
    """
    if not samples:
        raise ValueError("No images to build a dataset from.")
    images = decoded_pixels([s.path for s in samples], image_size, pixels)
    labels = tf.data.Dataset.from_tensor_slices(np.array([s.label for s in samples], dtype=np.int32))
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.zip(images, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def make_dataset(
    samples: list[Sample],
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = SEED,
    augment: AugmentConfig | None = None,
    cache_file: str | Path | None = None,
    pixels: Pixels = Pixels.INFERENCE,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], int32 labels).

    ``training`` shuffles (seeded, reshuffled each epoch) and applies
    ``augment``; evaluation keeps file order so results line up with files.
    """
    if not samples:
        raise ValueError("No images to build a dataset from.")
    dataset = decoded_images(samples, image_size, cache_file, pixels)
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
