"""Photos decoded ahead in a background thread: same batches, in order, bounded, stoppable."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from core.data.dataset import Sample
from core.data.decode_ahead import DecodeAhead
from core.data.images import Pixels
from core.data.pipeline import decoded_batches

SIZE = 24


def batches(count: int, *, start: int = 0, pulled: list | None = None):
    """``count`` batches of two 4x4 uint8 images (128 bytes a batch), numbered from ``start``."""
    for number in range(start, start + count):
        if pulled is not None:
            pulled.append(number)
        yield np.full((2, 4, 4, 4), number, np.uint8), np.array([number, number])


def test_each_stream_gives_its_datasets_batches_in_order():
    ahead = DecodeAhead([lambda: batches(5), lambda: batches(3, start=100)])
    try:
        first = [int(labels[0]) for _, labels in ahead.stream(0)]
        second = [int(labels[0]) for _, labels in ahead.stream(1)]
    finally:
        ahead.close()
    assert first == [0, 1, 2, 3, 4] and second == [100, 101, 102]


def test_decoded_photos_are_the_pixels_of_decoding_them_in_place(tmp_path):
    samples = []
    for index in range(5):  # mixed formats and a partial last batch
        path = tmp_path / f"{index}.{'png' if index % 2 else 'jpg'}"
        Image.new("RGB", (40, 30), (index * 40, 90, 200 - index * 30)).save(path)
        samples.append(Sample(str(path), index % 2, "odd" if index % 2 else "even"))
    ahead = DecodeAhead([lambda: decoded_batches(samples, SIZE, 2, Pixels.FAST)])
    try:
        decoded = list(ahead.stream(0))
    finally:
        ahead.close()
    in_place = [(images.numpy(), labels.numpy()) for images, labels in decoded_batches(samples, SIZE, 2, Pixels.FAST)]
    assert [len(labels) for _, labels in decoded] == [2, 2, 1]
    for (images, labels), (expected_images, expected_labels) in zip(decoded, in_place, strict=True):
        assert images.dtype == np.uint8
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)


def test_at_most_the_decode_budget_waits_unread(monkeypatch):
    """PAWLAB_DECODE_BUDGET_BYTES bounds the decoded photos a process holds, these too."""
    monkeypatch.setenv("PAWLAB_DECODE_BUDGET_BYTES", str(3 * 128))
    pulled: list[int] = []
    ahead = DecodeAhead([lambda: batches(50, pulled=pulled)])
    try:
        time.sleep(0.5)  # the producer runs ahead until the limit
        assert len(pulled) <= 4  # three waiting, and the one it holds
        read = [int(labels[0]) for _, labels in ahead.stream(0)]
    finally:
        ahead.close()
    assert read == list(range(50))  # reading makes room for the rest


def test_a_failing_dataset_raises_in_its_reader_and_the_next_still_streams():
    def broken():
        yield from batches(2)
        raise OSError("photo 3 vanished")

    ahead = DecodeAhead([broken, lambda: batches(2, start=10)])
    try:
        stream = ahead.stream(0)
        assert [int(labels[0]) for _, labels in (next(stream), next(stream))] == [0, 1]
        with pytest.raises(OSError, match="photo 3 vanished"):
            next(stream)
        assert [int(labels[0]) for _, labels in ahead.stream(1)] == [10, 11]
    finally:
        ahead.close()


def test_close_stops_a_producer_waiting_for_room():
    """A cancelled run closes the decoder while it waits for its reader: no thread is left."""
    pulled: list[int] = []
    ahead = DecodeAhead([lambda: batches(1000, pulled=pulled)], max_bytes=128)
    time.sleep(0.2)
    closing = threading.Thread(target=ahead.close)  # a close that never returned would hang the run
    closing.start()
    closing.join(30)
    assert not closing.is_alive() and not ahead.thread.is_alive()
    assert len(pulled) < 1000
    assert "decode-ahead" not in [thread.name for thread in threading.enumerate()]
