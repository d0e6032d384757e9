"""Photos decoded in a background thread, ahead of the code that reads them.

A run in cached-features mode spends its first seconds building its frozen
base and converting it for ONNX Runtime, on one core, before the base reads
its first batch of photos. Decoding those photos meanwhile puts the other
core to work: the feature pass then only runs the base.

    ahead = DecodeAhead([lambda: train_batches, lambda: validation_batches])
    ...                                   # build and convert the base
    for images, labels in ahead.stream(0):   # uint8 numpy batches, in order
        ...
    ahead.close()

One thread makes and reads the datasets in the order given, so the first
stream fills first. At most ``max_bytes`` of decoded batches wait at a time
(by default the decode budget, PAWLAB_DECODE_BUDGET_BYTES: 2800 photos at
160 px are 215 MB); a dataset larger than that streams, its reader a little
behind the decoder.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from core.config import get_settings

# How often a blocked producer looks whether its reader has gone.
POLL_SECONDS = 0.1

Batch = tuple[np.ndarray, np.ndarray]  # (uint8 images, int labels)
# Makes a dataset's batches when called: a tf.data pipeline, or any iterable of pairs.
Dataset = Callable[[], Iterable]


@dataclass(frozen=True)
class _Finished:
    error: BaseException | None = None  # why the dataset ended early, if it did


class DecodeAhead:
    """Batches of each dataset, decoded by one background thread in the order given."""

    def __init__(self, datasets: list[Dataset], max_bytes: int | None = None):
        self.max_bytes = get_settings().decode_budget_bytes if max_bytes is None else max_bytes
        self.queues: list[queue.Queue] = [queue.Queue() for _ in datasets]
        self.bytes_waiting = 0
        self.room = threading.Condition()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._produce, args=(datasets,), name="decode-ahead", daemon=True)
        self.thread.start()

    def stream(self, index: int) -> Iterator[Batch]:
        """The batches of dataset ``index``, in its order; raises what stopped its decoding."""
        while True:
            item = self.queues[index].get()
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                return
            images, labels = item
            with self.room:
                self.bytes_waiting -= images.nbytes
                self.room.notify_all()
            yield images, labels

    def close(self) -> None:
        """Stop decoding and let go of what waits; the thread ends after the batch it is on."""
        self.closed.set()
        with self.room:
            self.room.notify_all()
        self.thread.join()
        for waiting in self.queues:
            while not waiting.empty():
                waiting.get_nowait()

    def _produce(self, datasets: list[Dataset]) -> None:
        for index, make in enumerate(datasets):
            try:
                for images, labels in make():
                    if not self._wait_for_room():
                        return
                    batch = (np.asarray(images), np.asarray(labels))
                    with self.room:
                        self.bytes_waiting += batch[0].nbytes
                    self.queues[index].put(batch)
            except Exception as error:  # the reader raises it, in its own thread
                self.queues[index].put(_Finished(error))
            else:
                self.queues[index].put(_Finished())
            if self.closed.is_set():
                return

    def _wait_for_room(self) -> bool:
        """Block while max_bytes are waiting; False once closed."""
        with self.room:
            while self.bytes_waiting >= self.max_bytes and not self.closed.is_set():
                self.room.wait(POLL_SECONDS)
        return not self.closed.is_set()
