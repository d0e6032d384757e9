"""Frozen-base feature caching: computed once, reused from disk, keyed by what went in."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
from PIL import Image

from core.data.dataset import Sample
from core.data.images import Pixels
from core.models.features import cache_path, cached_features, extract_features

SIZE = 32


class CountingExtractor:
    """A feature extractor that counts the batches it is asked to process."""

    def __init__(self, model):
        self.model, self.batches = model, 0

    def predict_on_batch(self, images):
        self.batches += 1
        return self.model.predict_on_batch(images)


def tiny_extractor():
    """Images -> per-image mean colour and brightness: easy to check by hand."""
    image = keras.Input((SIZE, SIZE, 3), name="image")
    colour = keras.layers.GlobalAveragePooling2D()(image)
    return keras.Model(image, colour)


@pytest.fixture
def samples(tmp_path):
    """Seven flat-colour photos (batches of 3 leave a partial last batch)."""
    result = []
    for index in range(7):
        path = tmp_path / "photos" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (40, 50), (index * 30, 100, 200 - index * 20)).save(path)
        result.append(Sample(str(path), index % 2, "odd" if index % 2 else "even"))
    return result


def test_features_are_in_sample_order_as_float16(samples, tmp_path):
    seen = []
    features, labels = cached_features(
        tiny_extractor(),
        samples,
        SIZE,
        3,
        cache_key="tiny",
        cache_dir=tmp_path / "cache",
        progress=lambda d, t: seen.append((d, t)),
    )
    assert features.dtype == np.float16 and features.shape == (7, 3)
    np.testing.assert_allclose(features[:, 0], [i * 30 for i in range(7)], atol=0.5)
    np.testing.assert_array_equal(labels, [s.label for s in samples])
    assert seen == [(3, 7), (6, 7), (7, 7)]


def test_second_call_loads_from_disk_without_running_the_model(samples, tmp_path):
    cache = tmp_path / "cache"
    first_extractor = CountingExtractor(tiny_extractor())
    features, labels = cached_features(first_extractor, samples, SIZE, 4, cache_key="mnv2-imagenet", cache_dir=cache)
    assert first_extractor.batches == 2
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temp file left behind

    again = CountingExtractor(tiny_extractor())
    cached, cached_labels = cached_features(again, samples, SIZE, 4, cache_key="mnv2-imagenet", cache_dir=cache)
    assert again.batches == 0
    np.testing.assert_array_equal(cached, features)
    np.testing.assert_array_equal(cached_labels, labels)


def test_cache_key_size_pixels_files_and_labels_each_change_the_entry(samples, tmp_path):
    base = cache_path(tmp_path, "mnv2", SIZE, samples)
    relabelled = [Sample(s.path, 1 - s.label, s.class_name) for s in samples]
    assert (
        len(
            {
                base,
                cache_path(tmp_path, "other", SIZE, samples),
                cache_path(tmp_path, "mnv2", 64, samples),
                cache_path(tmp_path, "mnv2", SIZE, samples[:-1]),
                cache_path(tmp_path, "mnv2", SIZE, relabelled),
                cache_path(tmp_path, "mnv2", SIZE, samples, Pixels.FAST),
            }
        )
        == 6
    )

    # A photo rewritten in place is a different photo.
    Image.new("RGB", (40, 50), (0, 0, 0)).save(samples[0].path)
    import os

    os.utime(samples[0].path, ns=(1, 1))
    assert cache_path(tmp_path, "mnv2", SIZE, samples) != base


def test_a_damaged_cache_file_is_recomputed(samples, tmp_path):
    cache = tmp_path / "cache"
    features, _ = cached_features(tiny_extractor(), samples, SIZE, 4, cache_key="k", cache_dir=cache)
    cache_path(cache, "k", SIZE, samples).write_bytes(b"not a zip")
    counting = CountingExtractor(tiny_extractor())
    recomputed, _ = cached_features(counting, samples, SIZE, 4, cache_key="k", cache_dir=cache)
    assert counting.batches == 2
    np.testing.assert_array_equal(recomputed, features)


def test_extract_features_refuses_an_empty_dataset():
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, SIZE, SIZE, 3), "float32"), np.zeros(0, "int32")))
    with pytest.raises(ValueError, match="No images"):
        extract_features(tiny_extractor(), empty.batch(2))


def test_saved_later_the_features_return_before_the_file_and_a_second_call_waits_for_it(samples, tmp_path, monkeypatch):
    """A run's first epoch does not wait for the disk; its later reads of the same features do."""
    from core.models import features as module

    release = threading.Event()
    real_write = module.atomic_write

    def slow_write(path, data):
        release.wait(10)
        real_write(path, data)

    monkeypatch.setattr(module, "atomic_write", slow_write)
    cache = tmp_path / "cache"
    features, _ = cached_features(tiny_extractor(), samples, SIZE, 4, cache_key="k", cache_dir=cache, save_later=True)
    assert not cache_path(cache, "k", SIZE, samples).exists()  # returned while the write waits

    threading.Timer(0.3, release.set).start()
    again = CountingExtractor(tiny_extractor())
    cached, _ = cached_features(again, samples, SIZE, 4, cache_key="k", cache_dir=cache)
    assert again.batches == 0  # read from the file, once it was written: not computed twice
    np.testing.assert_array_equal(cached, features)


def test_a_cache_file_that_cannot_be_written_later_costs_only_speed(samples, tmp_path, monkeypatch, caplog):
    from core.models import features as module

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "atomic_write", full_disk)
    cache = tmp_path / "cache"
    features, _ = cached_features(tiny_extractor(), samples, SIZE, 4, cache_key="k", cache_dir=cache, save_later=True)
    assert features.shape == (7, 3)
    counting = CountingExtractor(tiny_extractor())
    cached_features(counting, samples, SIZE, 4, cache_key="k", cache_dir=cache, save_later=True)
    assert counting.batches == 2  # no file: computed again
    assert "No space left on device" in caplog.text
