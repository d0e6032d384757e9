"""The tf.data pipeline: one decode path with inference, file order for evaluation, every
photo exactly once per epoch through the single training iterator a fit uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_separable_dataset

from core.data.dataset import Sample, scan_dataset
from core.data.images import load_resized
from core.data.splits import make_splits

SIZE = 32


@pytest.fixture
def samples(tmp_path) -> list[Sample]:
    root = make_separable_dataset(tmp_path / "data", per_class=13, size=48)
    info = scan_dataset(root, use_cache=False)
    return [sample for split in info.splits.values() for sample in split]


def test_a_feature_pass_reads_uint8_inference_pixels_in_file_order_without_autotuning(samples):
    """One pass, as a frozen base's feature pass reads it. Autotuning is off: its thread made
    the end of the pass wait (0.6 s of a run's test step)."""
    from core.data.images import Pixels
    from core.data.pipeline import decoded_batches

    dataset = decoded_batches(samples, SIZE, 5, Pixels.INFERENCE)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    images = np.concatenate([x for x, _ in batches])
    assert images.dtype == np.uint8 and [len(y) for _, y in batches][:1] == [5]
    for image, label, sample in zip(images, np.concatenate([y for _, y in batches]), samples, strict=True):
        np.testing.assert_array_equal(image, load_resized(sample.path, SIZE))
        assert label == sample.label
    assert dataset.options().autotune.enabled is False


def _index_by_pixels(samples):
    """Photo index of each decoded image, found by its exact pixels."""
    return {load_resized(sample.path, SIZE).tobytes(): index for index, sample in enumerate(samples)}


def test_evaluation_gives_the_inference_pixels_of_every_photo_in_file_order(samples):
    from core.data.pipeline import make_dataset

    dataset = make_dataset(samples, SIZE, 5, training=False)
    images = np.concatenate([x.numpy() for x, _ in dataset])
    labels = np.concatenate([y.numpy() for _, y in dataset])
    assert images.shape == (len(samples), SIZE, SIZE, 3)
    for image, label, sample in zip(images, labels, samples):
        np.testing.assert_array_equal(image.astype(np.uint8), load_resized(sample.path, SIZE))
        assert label == sample.label
    # A cached second pass is the same.
    again = np.concatenate([x.numpy() for x, _ in dataset])
    np.testing.assert_array_equal(again, images)


def test_one_iterator_holds_every_photo_once_per_epoch_reshuffled_labels_aligned(samples):
    from core.data.pipeline import make_dataset
    from core.runs.training import fit_data

    batch_size, epochs = 4, 3
    index_of = _index_by_pixels(samples)
    train = make_dataset(samples, SIZE, batch_size, training=True, seed=7)
    arguments = fit_data(train, None)
    steps = arguments["steps_per_epoch"]
    assert steps == math.ceil(len(samples) / batch_size)

    iterator = iter(arguments["x"])
    orders = []
    for _ in range(epochs):
        order = []
        for step in range(steps):
            images, labels = next(iterator)
            # The last batch of an epoch is partial: batches never cross epochs.
            assert len(labels) == (len(samples) - batch_size * (steps - 1) if step == steps - 1 else batch_size)
            for image, label in zip(images.numpy().astype(np.uint8), labels.numpy()):
                index = index_of[image.tobytes()]
                assert samples[index].label == label
                order.append(index)
        assert sorted(order) == list(range(len(samples)))  # every photo exactly once
        orders.append(order)
    assert len({tuple(order) for order in orders}) == epochs  # reshuffled every epoch

    # The same orders as a new iterator per pass of the same dataset, seeded alike.
    fresh = make_dataset(samples, SIZE, batch_size, training=True, seed=7)
    for order in orders:
        labels_seen = [index_of[x.tobytes()] for images, _ in fresh for x in images.numpy().astype(np.uint8)]
        assert labels_seen == order


def test_fit_through_one_iterator_gives_the_same_epochs_batches_and_validation(tmp_path):
    """Same model, same data (no shuffle, so the batches are the same): per-epoch metrics,
    batch callbacks and validation numbers equal those of a new iterator per epoch."""
    import keras

    from core.data.pipeline import make_dataset
    from core.models.zoo import build_model
    from core.runs.training import _compile, _optimizer, fit_data

    root = make_separable_dataset(tmp_path / "data", per_class=10, size=SIZE)
    splits = make_splits(scan_dataset(root, use_cache=False))
    batch_size = 4

    class Batches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.per_epoch = []

        def on_epoch_begin(self, epoch, logs=None):
            self.per_epoch.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.per_epoch[-1] += 1

    def train(one_iterator: bool):
        keras.utils.set_random_seed(3)
        model = build_model("cnn", 2, SIZE)
        _compile(model, _optimizer(1e-3))
        data = make_dataset(splits.train, SIZE, batch_size, training=False)
        val = make_dataset(splits.validation, SIZE, batch_size, training=False)
        arguments = fit_data(data, val) if one_iterator else {"x": data, "validation_data": val}
        batches = Batches()
        history = model.fit(**arguments, epochs=3, callbacks=[batches], verbose=0, shuffle=False)
        return history.history, batches.per_epoch, model.evaluate(val, verbose=0)

    before, after = train(False), train(True)
    assert after[1] == before[1] == [math.ceil(len(splits.train) / batch_size)] * 3
    assert after[0].keys() == before[0].keys()
    for key in before[0]:
        np.testing.assert_allclose(after[0][key], before[0][key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(after[2], before[2], rtol=1e-6)
