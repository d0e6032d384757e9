"""Train / validation / test splits that never leak.

The tutorial PawLab follows takes its test set with ``validation.take(n)`` on
a dataset that reshuffles every pass, so its test images are also validation
images. Here a split is a pure function of file names and a seed: each file
gets a stable hash rank within its class, and the lowest ranks go to test.
Same files + same seed = same split on every machine, whatever order the
file system lists them in or wherever the folder lives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.data.dataset import DatasetInfo, Sample

DEFAULT_SEED = 1337


@dataclass(frozen=True)
class Splits:
    classes: list[str]
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]

    def as_dict(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {name: sum(s.class_name == name for s in samples) for name in self.classes}
            for split, samples in self.as_dict().items()
        }


def _rank(sample: Sample, seed: int) -> str:
    # The class folder and file name, not the absolute path: the same dataset
    # unpacked elsewhere gets the same split.
    key = f"{seed}/{sample.class_name}/{Path(sample.path).name}"
    return hashlib.sha256(key.encode()).hexdigest()


def _take_per_class(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified: ``fraction`` of each class (rounded, at least one when possible) is taken."""
    taken, rest = [], []
    by_class: dict[str, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.class_name, []).append(sample)
    for class_samples in by_class.values():
        ordered = sorted(class_samples, key=lambda s: _rank(s, seed))
        count = round(len(ordered) * fraction)
        if fraction > 0 and count == 0 and len(ordered) > 1:
            count = 1
        taken += ordered[:count]
        rest += ordered[count:]
    return sorted(taken, key=lambda s: s.path), sorted(rest, key=lambda s: s.path)


def make_splits(
    info: DatasetInfo,
    seed: int = DEFAULT_SEED,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
) -> Splits:
    """Split a scanned dataset.

    - With train/ and validation/ folders: train is train/; test is
      ``test_fraction`` of validation/ (per class), validation the rest.
    - With a test/ folder too: the three folders are used as they are.
    - With one pool of class folders: test and validation fractions of the
      whole pool are taken per class, train is the rest.
    """
    if "test" in info.splits and "validation" in info.splits:
        return Splits(info.classes, info.splits.get("train", []),
                      info.splits["validation"], info.splits["test"])
    if "validation" in info.splits:
        test, validation = _take_per_class(info.splits["validation"], test_fraction, seed)
        return Splits(info.classes, sorted(info.splits["train"], key=lambda s: s.path), validation, test)
    pool = [s for samples in info.splits.values() for s in samples]
    test, rest = _take_per_class(pool, test_fraction, seed)
    # validation_fraction is of the whole pool, so rescale it to what is left.
    remaining_fraction = validation_fraction / max(1e-9, 1 - test_fraction)
    validation, train = _take_per_class(rest, remaining_fraction, seed)
    return Splits(info.classes, train, validation, test)


def subset(samples: list[Sample], per_class: int, seed: int = DEFAULT_SEED) -> list[Sample]:
    """A stable, stratified subset of at most ``per_class`` samples of each class."""
    by_class: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: _rank(s, seed)):
        by_class.setdefault(sample.class_name, []).append(sample)
    chosen = [s for class_samples in by_class.values() for s in class_samples[:per_class]]
    return sorted(chosen, key=lambda s: s.path)
