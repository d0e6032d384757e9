"""Input pipeline throughput: PawLab's tf.data pipeline against the tutorial's.

    python benchmarks/bench_pipeline.py [--rounds 3] [--photos N] [--image-size 160] [--batch-size 32]

Both read the same training photos of ../shared/data/cats_and_dogs (all 2000,
or ``--photos N``: the first N/2 of each class, through a temporary folder of
symlinks) at the same size and batch size (core.defaults unless given), in
the same process. The tutorial's pipeline is
``image_dataset_from_directory(...).prefetch(AUTOTUNE)`` and decodes every
photo on every pass; ours is the one training photos get (``Pixels.FAST``:
TensorFlow's JPEG decoder for plain JPEGs, Pillow for the rest), decodes
once, caches uint8 images, then shuffles, batches and prefetches. Each round builds a fresh PawLab dataset and times its
first pass (decoding) and its second (cached) against one tutorial pass,
alternating which pipeline goes first so a change in machine load hits both.
An untimed pass of each first puts the files in the OS page cache and pays\neach pipeline's one-off start-up costs (tracing, imports).
Augmentation is off for both (the tutorial applies it inside the model).
Prints os.cpu_count() and the load averages sampled before and after each round,
and each first pass's CPU milliseconds per photo (all threads of the process):
on a shared machine a pass sometimes gets one core's worth of time, sometimes
two, and CPU cost per photo does not depend on that.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import cats_and_dogs, table, use_temp_homes

from core import defaults


def images_per_second(dataset) -> tuple[float, float]:
    """(photos per wall second, CPU milliseconds per photo) of one pass over ``dataset``.

    CPU time (all threads of this process) is what a pass costs, whatever share
    of the cores the machine gave it; wall time is what a person waits.
    """
    start, cpu_start, count = time.perf_counter(), time.process_time(), 0
    for images, _ in dataset:
        count += int(images.shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, 1000 * cpu / count


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
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (tutorial pass, PawLab first pass, PawLab cached pass)"
    )
    parser.add_argument("--photos", type=int, default=0, help="training photos to read, half per class; 0 = all")
    parser.add_argument("--image-size", type=int, default=defaults.IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    args = parser.parse_args()
    home = use_temp_homes()

    import tensorflow as tf

    from core.data.dataset import scan_dataset
    from core.data.images import Pixels
    from core.data.pipeline import make_dataset

    root = photo_folder(args.photos // 2, Path(tempfile.mkdtemp(dir=home))) if args.photos else cats_and_dogs()
    size = (args.image_size, args.image_size)
    tutorial = tf.keras.utils.image_dataset_from_directory(
        root / "train", shuffle=True, batch_size=args.batch_size, image_size=size, seed=defaults.SEED
    ).prefetch(tf.data.AUTOTUNE)
    info = scan_dataset(root)
    print(
        f"{len(info.splits['train'])} training photos, {args.image_size} px, batch {args.batch_size}; "
        f"os.cpu_count(): {os.cpu_count()}; load average (1/5/15 min) before: {load()}"
    )
    # Untimed warm-up of both: the files land in the OS page cache, and each
    # pipeline's one-off start-up cost (tracing, imports) is paid before timing.
    images_per_second(tutorial)
    images_per_second(
        make_dataset(info.splits["train"][:256], args.image_size, args.batch_size, training=True, pixels=Pixels.FAST)
    )

    rows = []
    for index in range(1, args.rounds + 1):
        load_before = load()
        # A fresh PawLab dataset each round: its first pass decodes every photo (no cache yet).
        ours = make_dataset(info.splits["train"], args.image_size, args.batch_size, training=True, pixels=Pixels.FAST)
        if index % 2:
            tutorial_rate, tutorial_cpu = images_per_second(tutorial)
            first_rate, first_cpu = images_per_second(ours)
        else:  # alternate who goes first, so a change in machine load hits both alike
            first_rate, first_cpu = images_per_second(ours)
            tutorial_rate, tutorial_cpu = images_per_second(tutorial)
        cached_rate, _ = images_per_second(ours)
        rows.append(
            {
                "round": index,
                "tutorial img/s": tutorial_rate,
                "PawLab first pass img/s": first_rate,
                "first / tutorial": first_rate / tutorial_rate,
                "tutorial CPU ms/photo": tutorial_cpu,
                "PawLab first CPU ms/photo": first_cpu,
                "tutorial CPU / PawLab CPU": tutorial_cpu / first_cpu,
                "PawLab cached pass img/s": cached_rate,
                "cached / tutorial": cached_rate / tutorial_rate,
                "load before": load_before,
                "load after": load(),
            }
        )
    print(table(rows, list(rows[0])))
    for key in ("first / tutorial", "tutorial CPU / PawLab CPU", "cached / tutorial"):
        ratios = [row[key] for row in rows]
        print(
            f"PawLab {key}: {min(ratios):.2f}x to {max(ratios):.2f}x over {len(rows)} rounds "
            "(load: 1/5/15-minute averages, os.getloadavg)"
        )


if __name__ == "__main__":
    main()
