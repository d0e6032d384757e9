"""Input pipeline throughput: PawLab's tf.data pipeline against the tutorial's.

    python benchmarks/bench_pipeline.py [--passes 3] [--photos N] [--image-size 160] [--batch-size 32]

Both read the same training photos of ../shared/data/cats_and_dogs (all 2000,
or ``--photos N``: the first N/2 of each class, through a temporary folder of
symlinks) at the same size and batch size (core.defaults unless given), in
the same process, passes interleaved so machine noise hits both alike. The
tutorial's pipeline is ``image_dataset_from_directory(...).prefetch(AUTOTUNE)``;
ours decodes once, caches uint8 images, then shuffles, batches and prefetches.
Augmentation is off for both (the tutorial applies it inside the model).
Prints os.cpu_count() and the load averages sampled before and after each pass.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import cats_and_dogs, table, use_temp_homes

from core import defaults


def images_per_second(dataset) -> tuple[float, int]:
    start, count = time.perf_counter(), 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start), count


def photo_folder(per_class: int, into: Path) -> Path:
    """train/<class>/ with symlinks to the first ``per_class`` training photos of each class."""
    source = cats_and_dogs() / "train"
    for class_dir in sorted(source.iterdir()):
        target = into / "train" / class_dir.name
        target.mkdir(parents=True)
        for photo in sorted(class_dir.iterdir())[:per_class]:
            (target / photo.name).symlink_to(photo)
    return into


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--photos", type=int, default=0,
                        help="training photos to read, half per class; 0 = all")
    parser.add_argument("--image-size", type=int, default=defaults.IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    args = parser.parse_args()
    home = use_temp_homes()

    import tensorflow as tf

    from core.data.dataset import scan_dataset
    from core.data.pipeline import make_dataset

    root = photo_folder(args.photos // 2, Path(tempfile.mkdtemp(dir=home))) if args.photos else cats_and_dogs()
    size = (args.image_size, args.image_size)
    tutorial = tf.keras.utils.image_dataset_from_directory(
        root / "train", shuffle=True, batch_size=args.batch_size, image_size=size, seed=defaults.SEED
    ).prefetch(tf.data.AUTOTUNE)
    info = scan_dataset(root)
    ours = make_dataset(info.splits["train"], args.image_size, args.batch_size, training=True)
    print(f"{len(info.splits['train'])} training photos, {args.image_size} px, batch {args.batch_size}; "
          f"os.cpu_count(): {os.cpu_count()}; load average (1/5/15 min) before: {load()}")

    rows = []
    for index in range(1, args.passes + 1):
        load_before = load()
        tutorial_rate, tutorial_count = images_per_second(tutorial)
        ours_rate, ours_count = images_per_second(ours)
        rows.append({"pass": index, "photos": f"{tutorial_count}/{ours_count}",
                     "tutorial img/s": tutorial_rate, "PawLab img/s": ours_rate,
                     "ratio": ours_rate / tutorial_rate,
                     "load before": load_before, "load after": load()})
    print(table(rows, ["pass", "photos", "tutorial img/s", "PawLab img/s", "ratio",
                       "load before", "load after"]))
    later = rows[1:] or rows
    print(f"\nPasses {'2+' if rows[1:] else '1'}: PawLab / tutorial = "
          f"{min(r['ratio'] for r in later):.1f}x to {max(r['ratio'] for r in later):.1f}x "
          "(load: 1/5/15-minute averages, os.getloadavg)")


if __name__ == "__main__":
    main()
