"""Input pipeline throughput: PawLab's tf.data pipeline against the tutorial's.

    python benchmarks/bench_pipeline.py [--passes 3] [--image-size 160]

Both read the same 2000 training photos of ../shared/data/cats_and_dogs at
the same size and batch size, in the same process, passes interleaved so
machine noise hits both alike. The tutorial's pipeline is
``image_dataset_from_directory(...).prefetch(AUTOTUNE)``; ours decodes once,
caches uint8 images, then shuffles, batches and prefetches. Augmentation is
off for both (the tutorial applies it inside the model).
"""

from __future__ import annotations

import argparse
import time

from _common import cats_and_dogs, table, use_temp_homes


def images_per_second(dataset) -> float:
    start, count = time.perf_counter(), 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    use_temp_homes()

    import tensorflow as tf

    from core.data.dataset import scan_dataset
    from core.data.pipeline import make_dataset

    root = cats_and_dogs()
    size = (args.image_size, args.image_size)
    tutorial = tf.keras.utils.image_dataset_from_directory(
        root / "train", shuffle=True, batch_size=args.batch_size, image_size=size, seed=1
    ).prefetch(tf.data.AUTOTUNE)
    info = scan_dataset(root)
    ours = make_dataset(info.splits["train"], args.image_size, args.batch_size, training=True)

    rows = []
    for index in range(1, args.passes + 1):
        tutorial_rate = images_per_second(tutorial)
        ours_rate = images_per_second(ours)
        rows.append({"pass": index, "tutorial img/s": tutorial_rate, "PawLab img/s": ours_rate,
                     "ratio": ours_rate / tutorial_rate})
    print(table(rows, ["pass", "tutorial img/s", "PawLab img/s", "ratio"]))
    later = rows[1:] or rows
    print(f"\nPasses 2+: PawLab / tutorial = "
          f"{min(r['ratio'] for r in later):.1f}x to {max(r['ratio'] for r in later):.1f}x")


if __name__ == "__main__":
    main()
