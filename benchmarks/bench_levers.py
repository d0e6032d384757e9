"""Accuracy levers for a frozen ImageNet MobileNetV2: image size, flips, the head's regularisation.

    python benchmarks/bench_levers.py [--sizes 160,224,256,288] [--folds 10] [--errors errors.png]

The transfer recipe trains a linear head on cached pooled MobileNetV2
features, so a lever that acts on features can be judged on the features
alone. This script extracts them the way the recipe does (zoo.build_frozen_parts
+ onnx_base.fast_base over core.data.pipeline), for every training and
validation photo of ../shared/data/cats_and_dogs and for its left-right
mirror image, at each size. It then compares, by stratified k-fold
cross-validation over those 2800 photos (more photos than the 800 of the
validation split, so one error moves the figure less; the 200-photo test split
is never read), a logistic regression head (scikit-learn, the stand-in for
the recipe's Keras head) under each lever:

- plain: trained and scored on the photos as they are;
- test-time flips: probabilities averaged over a photo and its mirror image;
- flipped copies: mirror images added to the training folds, scored with flips;
- the L2 strength C of the head (smaller: stronger), and several sizes' features side by side.

Prints the errors and accuracy of each, the seconds each extraction took and
the load average, and with ``--errors`` saves a contact sheet of the photos the
best lever still gets wrong (to see whether they are the model's errors or the
dataset's).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import cats_and_dogs, table, use_temp_homes

C_VALUES = (0.01, 0.03, 0.1, 0.3)
EXTRACT_BATCH = 64


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def extract(samples, image_size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(features, features of the mirror images, seconds) for ``samples`` at ``image_size``."""
    import tensorflow as tf

    from core.data.pipeline import make_dataset
    from core.models.onnx_base import fast_base
    from core.models.zoo import build_frozen_parts

    start = time.perf_counter()
    extractor, _ = build_frozen_parts("mobilenet_v2_finetune", 2, image_size)
    base = fast_base(extractor)
    plain, mirrored = [], []
    for images, _ in make_dataset(samples, image_size, EXTRACT_BATCH, training=False):
        plain.append(base.predict_on_batch(images))
        mirrored.append(base.predict_on_batch(tf.image.flip_left_right(images)))
    return np.concatenate(plain), np.concatenate(mirrored), time.perf_counter() - start


def out_of_fold(features, mirrored, labels, c: float, folds: int, *, flip_test: bool, flip_train: bool) -> np.ndarray:
    """Each photo's class probabilities from a head that never saw it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.zeros((len(labels), int(labels.max()) + 1))
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=0).split(features, labels):
        x, y = features[train], labels[train]
        if flip_train:
            x, y = np.concatenate([x, mirrored[train]]), np.concatenate([y, y])
        head = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        probabilities[held_out] = head.predict_proba(features[held_out])
        if flip_test:
            probabilities[held_out] = (probabilities[held_out] + head.predict_proba(mirrored[held_out])) / 2
    return probabilities


LEVERS = {  # name: (flip_test, flip_train)
    "plain": (False, False),
    "test-time flips": (True, False),
    "flipped copies + test-time flips": (True, True),
}


def save_errors(path: str, samples, probabilities, labels, classes) -> None:
    from PIL import Image, ImageDraw

    wrong = np.where(probabilities.argmax(1) != labels)[0]
    wrong = wrong[np.argsort(-probabilities[wrong].max(1))]
    columns, cell = 7, 200
    sheet = Image.new("RGB", (columns * cell, max(1, -(-len(wrong) // columns)) * (cell + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, index in enumerate(wrong):
        photo = Image.open(samples[index].path).convert("RGB")
        photo.thumbnail((cell, cell))
        x, y = (k % columns) * cell, (k // columns) * (cell + 24)
        sheet.paste(photo, (x, y))
        draw.text(
            (x + 2, y + cell + 4),
            f"{os.path.basename(samples[index].path)}: "
            f"{classes[labels[index]]} -> {classes[probabilities[index].argmax()]} "
            f"{probabilities[index].max():.2f}",
            fill="black",
        )
    sheet.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="160,224,256,288")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--errors", help="save the best lever's wrong photos as a contact sheet here")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    use_temp_homes()

    from core.data.splits import split_dataset

    info, splits = split_dataset(cats_and_dogs(), corrections={})
    samples = splits.train + splits.validation
    labels = np.array([sample.label for sample in samples])
    print(
        f"{len(samples)} photos (train + validation; the test split is not read), {args.folds}-fold "
        f"cross-validation; os.cpu_count(): {os.cpu_count()}; load average (1/5/15 min) before: {load()}"
    )

    features, extraction = {}, []
    for size in sizes:
        load_before = load()
        plain, mirrored, seconds = extract(samples, size)
        features[size] = (plain.astype(np.float32), mirrored.astype(np.float32))
        extraction.append(
            {
                "size": size,
                "photos x2 (plain, mirrored)": len(samples),
                "seconds": seconds,
                "load before": load_before,
                "load after": load(),
            }
        )
    print(table(extraction, list(extraction[0])))

    combos = [[size] for size in sizes] + ([sizes[-3:]] if len(sizes) >= 3 else [])
    rows, best = [], None
    for combo in combos:
        plain = np.concatenate([features[size][0] for size in combo], axis=1)
        mirrored = np.concatenate([features[size][1] for size in combo], axis=1)
        for c in C_VALUES:
            for lever, (flip_test, flip_train) in LEVERS.items():
                probabilities = out_of_fold(
                    plain, mirrored, labels, c, args.folds, flip_test=flip_test, flip_train=flip_train
                )
                errors = int((probabilities.argmax(1) != labels).sum())
                rows.append(
                    {
                        "features": "+".join(f"{size} px" for size in combo),
                        "C": c,
                        "lever": lever,
                        "errors": errors,
                        "accuracy": f"{1 - errors / len(labels):.4f}",
                    }
                )
                if best is None or errors < best[0]:
                    best = (errors, rows[-1], probabilities)
    print(table(rows, list(rows[0])))
    print(
        f"Fewest errors: {best[1]['features']}, C={best[1]['C']}, {best[1]['lever']}: "
        f"{best[0]} of {len(labels)} ({best[1]['accuracy']}); load average after: {load()}"
    )
    if args.errors:
        save_errors(args.errors, samples, best[2], labels, info.classes)
        print(f"Its wrong photos: {args.errors}")


if __name__ == "__main__":
    main()
