"""Train / validation / test splits that never leak, and records that rebuild them.

The tutorial PawLab follows takes its test set with ``validation.take(n)`` on
a dataset that reshuffles every pass, so its test images are also validation
images. Here a split is a pure function of file names and a seed: each file
gets a stable hash rank within its class, and the lowest ranks are taken.
Same files + same seed = same split on every machine, whatever order the
file system lists them in or wherever the folder lives.

A run scans once and keeps the exact split it trained on::

    info, splits = split_dataset(root, seed=1337)
    record = splits.to_record()                     # JSON-able, paths relative to root
    same = Splits.from_record(record, root)         # later: no scan, no decode
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

from core.data.corrections import apply_corrections, load_corrections
from core.data.dataset import DatasetError, DatasetInfo, Sample, scan_dataset
from core.data.layout import Split
from core.defaults import SEED, TEST_FRACTION, VALIDATION_FRACTION


class SplitRule(Enum):
    """How a dataset's folders become the three sets."""

    FOLDERS = "train/, validation/ and test/ folders used as they are"
    TEST_FROM_VALIDATION = "train/ is train; test is a share of validation/, validation the rest"
    VALIDATION_FROM_TRAIN = "test/ is test; validation is a share of train/, train the rest"
    POOL = "one pool of class folders split three ways"

    @classmethod
    def of(cls, info: DatasetInfo) -> SplitRule:
        folders = set(info.splits)
        if {Split.TRAIN, Split.VALIDATION, Split.TEST} <= folders:
            return cls.FOLDERS
        if {Split.TRAIN, Split.VALIDATION} <= folders:
            return cls.TEST_FROM_VALIDATION
        if {Split.TRAIN, Split.TEST} <= folders:
            return cls.VALIDATION_FROM_TRAIN
        return cls.POOL

    def explain(self, test_fraction: float = TEST_FRACTION, validation_fraction: float = VALIDATION_FRACTION) -> str:
        """One sentence for the Dataset page."""
        picked = "picked by a stable hash of the file name"
        if self is SplitRule.FOLDERS:
            return "The train/, validation/ and test/ folders are used as they are."
        if self is SplitRule.TEST_FROM_VALIDATION:
            return (
                f"train/ is the training set. The test set is {test_fraction:.0%} of "
                f"validation/ per class, {picked}, so no test photo is ever a "
                "validation photo."
            )
        if self is SplitRule.VALIDATION_FROM_TRAIN:
            return (
                f"test/ is the test set. The validation set is {validation_fraction:.0%} "
                f"of train/ per class, {picked}; train is the rest."
            )
        return (
            f"There are no split folders, so {validation_fraction:.0%} of each class is "
            f"held out for validation and {test_fraction:.0%} for test, {picked}."
        )


@dataclass(frozen=True)
class Splits:
    classes: list[str]
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    root: str = ""  # the scanned folder; record paths are relative to it

    def as_dict(self) -> dict[str, list[Sample]]:
        return {Split.TRAIN: self.train, Split.VALIDATION: self.validation, Split.TEST: self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {name: sum(s.class_name == name for s in samples) for name in self.classes}
            for split, samples in self.as_dict().items()
        }

    def to_record(self, root: str | os.PathLike | None = None) -> dict:
        """What a run stores to rebuild this exact split later, even after the folder changes.

        ``{"classes": [...], "train": [[relative_path, class_name], ...], "validation": ...,
        "test": ...}`` with ``/``-separated paths relative to ``root`` (default: the
        scanned folder), so the record still fits the dataset copied elsewhere.
        """
        if not (root or self.root):
            raise ValueError("These splits do not know their dataset folder; pass root=.")
        base = Path(root or self.root)
        record: dict = {"classes": list(self.classes)}
        for split, samples in self.as_dict().items():
            record[str(split)] = [[Path(s.path).relative_to(base).as_posix(), s.class_name] for s in samples]
        return record

    @classmethod
    def from_record(cls, record: dict, root: str | os.PathLike) -> Splits:
        """The splits a record describes, with absolute paths under ``root``; no scan, no decode.

        ``root`` is resolved as scan_dataset resolves it, so the paths equal a fresh scan's.
        """
        base = Path(root).expanduser().resolve()
        try:
            classes = [str(name) for name in record["classes"]]
            label_of = {name: index for index, name in enumerate(classes)}
            sets = {split: [_sample(entry, base, label_of) for entry in record[split]] for split in map(str, Split)}
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"The recorded split is damaged ({error}).") from None
        return cls(classes, sets[Split.TRAIN], sets[Split.VALIDATION], sets[Split.TEST], root=str(base))


def _sample(entry, root: Path, label_of: dict[str, int]) -> Sample:
    """One ``[relative_path, class_name]`` of a record; it may not point outside ``root``."""
    relative, class_name = entry
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ValueError(f"{relative!r} is not a path inside the dataset")
    if class_name not in label_of:
        raise ValueError(f"{class_name!r} is not one of the recorded classes")
    return Sample(str(root.joinpath(*parts)), label_of[class_name], class_name)


def _rank(sample: Sample, seed: int) -> str:
    # The class folder and file name, not the absolute path: the same dataset
    # unpacked elsewhere gets the same split.
    key = f"{seed}/{sample.class_name}/{Path(sample.path).name}"
    return hashlib.sha256(key.encode()).hexdigest()


def _by_path(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.path)


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
    return _by_path(taken), _by_path(rest)


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError("Test and validation fractions must be between 0 and 1 and leave images to train on.")


def make_splits(
    info: DatasetInfo,
    seed: int = SEED,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
) -> Splits:
    """Split a scanned dataset by its ``SplitRule``.

    - train/, validation/ and test/ folders: used as they are.
    - train/ and validation/: train is train/; test is ``test_fraction`` of
      validation/ (per class), validation the rest.
    - train/ and test/ (or testing/): test is the person's own test/;
      validation is ``validation_fraction`` of train/ (per class), train the rest.
    - one pool of class folders (or train/ alone): test and validation
      fractions of the whole pool are taken per class, train is the rest.
    """
    _check_fractions(test_fraction, validation_fraction)
    folders = info.splits
    rule = SplitRule.of(info)
    if rule is SplitRule.FOLDERS:
        train, validation, test = (_by_path(folders[s]) for s in Split)
    elif rule is SplitRule.TEST_FROM_VALIDATION:
        test, validation = _take_per_class(folders[Split.VALIDATION], test_fraction, seed)
        train = _by_path(folders[Split.TRAIN])
    elif rule is SplitRule.VALIDATION_FROM_TRAIN:
        validation, train = _take_per_class(folders[Split.TRAIN], validation_fraction, seed)
        test = _by_path(folders[Split.TEST])
    else:
        pool = [s for samples in folders.values() for s in samples]
        test, rest = _take_per_class(pool, test_fraction, seed)
        # validation_fraction is of the whole pool, so rescale it to what is left.
        validation, train = _take_per_class(rest, validation_fraction / (1 - test_fraction), seed)
    return Splits(info.classes, train, validation, test, root=info.root)


def split_dataset(
    root: str | os.PathLike,
    seed: int = SEED,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    *,
    use_cache: bool = True,
    corrections: dict[str, str | None] | None = None,
) -> tuple[DatasetInfo, Splits]:
    """Scan ``root`` once, apply its corrections and split it: what a training run,
    the doctor and the Dataset page all need.

    ``corrections``: a run's snapshot ({relative path: class or None}); None
    applies the dataset's current corrections file (core.data.corrections).
    """
    info = scan_dataset(root, use_cache=use_cache)
    if corrections is None:
        corrections = load_corrections(info.root).mapping
    info = apply_corrections(info, corrections)
    return info, make_splits(info, seed, test_fraction, validation_fraction)


def subset(samples: list[Sample], per_class: int, seed: int = SEED) -> list[Sample]:
    """A stable, stratified subset of at most ``per_class`` samples of each class."""
    by_class: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: _rank(s, seed)):
        by_class.setdefault(sample.class_name, []).append(sample)
    chosen = [s for class_samples in by_class.values() for s in class_samples[:per_class]]
    return _by_path(chosen)
