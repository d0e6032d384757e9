"""Epoch times: a new training iterator per epoch against one for the whole fit.

    python benchmarks/bench_epochs.py [--arch cnn] [--epochs 6] [--train 480] [--validation 160]
                                      [--image-size 160] [--batch-size 32] [--order old,new]

Trains the same model (same seed, same photos: the first N/2 of each class of
../shared/data/cats_and_dogs) twice in one process, one variant after the other:

* ``old``: ``model.fit(train, validation_data=val)``, what PawLab did before:
  Keras makes a new training and validation iterator every epoch;
* ``new``: ``model.fit(**core.runs.training.fit_data(train, val))``, what a run
  does now: one training iterator for the whole fit (``repeat()`` with
  ``steps_per_epoch``), validation without the autotune thread.

Prints every epoch (wall and CPU seconds, the time from the epoch's start to its
first batch, validation seconds, accuracies, the 1-minute load average) and, per
variant, max/median epoch time over epochs 2+, with the load averages measured
before and after. The machine is shared: compare the variants of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import cats_and_dogs, table, use_temp_homes

from core import defaults


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def subset(split: str, count: int):
    from core.data.dataset import Sample

    samples = []
    for label, class_dir in enumerate(sorted((cats_and_dogs() / split).iterdir())):
        for photo in sorted(class_dir.iterdir())[: count // 2]:
            samples.append(Sample(str(photo), label, class_dir.name))
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=480, help="training photos, half per class")
    parser.add_argument("--validation", type=int, default=160, help="validation photos, half per class")
    parser.add_argument("--image-size", type=int, default=defaults.IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    parser.add_argument("--order", default="old,new", help="variants in the order they run")
    args = parser.parse_args()
    use_temp_homes()

    import keras

    from core.data.pipeline import make_dataset
    from core.models.zoo import build_model
    from core.runs.training import _compile, _optimizer, fit_data

    train_samples, val_samples = subset("train", args.train), subset("validation", args.validation)

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self, variant):
            super().__init__()
            self.variant, self.rows = variant, []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu, self.first, self.val_start = time.perf_counter(), time.process_time(), None, None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first is None:
                self.first = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.val_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.rows.append(
                {
                    "variant": self.variant,
                    "epoch": epoch + 1,
                    "seconds": now - self.start,
                    "cpu seconds": time.process_time() - self.cpu,
                    "to first batch": self.first - self.start,
                    "validation": now - self.val_start,
                    "accuracy": logs["accuracy"],
                    "val_accuracy": logs["val_accuracy"],
                    "load 1 min": f"{os.getloadavg()[0]:.2f}",
                }
            )

    print(
        f"{args.arch}, {len(train_samples)} training and {len(val_samples)} validation photos, "
        f"{args.image_size} px, batch {args.batch_size}, {args.epochs} epochs per variant; "
        f"os.cpu_count(): {os.cpu_count()}",
        flush=True,
    )
    rows, summary = [], []
    for variant in args.order.split(","):
        keras.utils.set_random_seed(defaults.SEED)
        model = build_model(args.arch, 2, args.image_size)
        _compile(model, _optimizer(1e-3))
        train = make_dataset(train_samples, args.image_size, args.batch_size, training=True)
        val = make_dataset(val_samples, args.image_size, args.batch_size, training=False)
        data = fit_data(train, val) if variant == "new" else {"x": train, "validation_data": val}
        times = EpochTimes(variant)
        before = load()
        model.fit(**data, epochs=args.epochs, callbacks=[times], verbose=0, shuffle=False)
        rows += times.rows
        later = [row["seconds"] for row in times.rows[1:]]
        summary.append(
            {
                "variant": variant,
                "epochs 2+ seconds": " ".join(f"{s:.1f}" for s in later),
                "median": statistics.median(later),
                "max/median": max(later) / statistics.median(later),
                "load before": before,
                "load after": load(),
            }
        )
    print(
        table(
            rows,
            [
                "variant",
                "epoch",
                "seconds",
                "cpu seconds",
                "to first batch",
                "validation",
                "accuracy",
                "val_accuracy",
                "load 1 min",
            ],
        )
    )
    print()
    print(table(summary, ["variant", "epochs 2+ seconds", "median", "max/median", "load before", "load after"]))
    print("(load: 1/5/15-minute averages, os.getloadavg)")


if __name__ == "__main__":
    main()
