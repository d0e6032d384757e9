"""Train / validation / test splits that never leak, and records that rebuild them.

The tutorial PawLab follows takes its test set with ``validation.take(n)`` on
a dataset that reshuffles every pass, so its test images are also validation
images. Here a split is a pure function of file names and a seed: each file
gets a stable hash rank within its class, and the lowest ranks are taken.
Same files + same seed = same split on every machine, whatever order the
file system lists them in or wherever the folder lives.

Duplicates go to one split together: photos with the same bytes (the scan's
sha256) and, once the data doctor has reviewed the dataset, the near-duplicate
groups of its saved report. A group is placed by its first member's rank and
taken whole, so the split stays stratified within a photo or two per class.
Split folders the person made are used as they are: a copy across them stays
a leak, which the doctor reports.

A run scans once and keeps the exact split it trained on::

    info, splits = split_dataset(root, seed=1337)
    record = splits.to_record()                     # JSON-able, paths relative to root
    same = Splits.from_record(record, root)         # later: no scan, no decode
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath

from core.config import get_settings
from core.data.corrections import apply_corrections, load_corrections
from core.data.dataset import DatasetError, DatasetInfo, Sample, scan_dataset
from core.data.layout import Split
from core.defaults import SEED, TEST_FRACTION, VALIDATION_FRACTION
from core.fileio import read_json

# The data doctor (core.review.runner) saves its report in PAWLAB_HOME/reviews/<dataset>-<key>/;
# the split reads its near-duplicate groups, so where it lives is known here.
REVIEWS_FOLDER = "reviews"
REPORT_FILE = "report.json"
# What a split record made before duplicates were kept together says it did.
NOT_GROUPED = "none: photos split one by one by file name"
FOLDERS_GROUPING = "none: the split folders are used as they are; a copy across them is a leak the data doctor lists"


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
        """A few sentences for the Dataset page."""
        picked = "picked by a stable hash of the file name"
        if self is SplitRule.FOLDERS:
            return (
                "The train/, validation/ and test/ folders are used as they are; a photo copied "
                "across them is a leak the data doctor lists."
            )
        shares = self._shares(test_fraction, validation_fraction, picked)
        if self is SplitRule.POOL:
            return f"{shares} {GROUPING_RULE}"
        return f"{shares} {GROUPING_RULE} A photo copied across the split folders you made is a leak the data doctor lists."

    def _shares(self, test_fraction: float, validation_fraction: float, picked: str) -> str:
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


GROUPING_RULE = (
    "Copies of one photo (the same bytes) go to one split together, and so do the near "
    "duplicates of the data doctor's last report; without a report, only exact copies are grouped."
)


@dataclass(frozen=True)
class NearDuplicates:
    """Groups of nearly identical photos the data doctor found (absolute paths)."""

    groups: list[list[str]] = field(default_factory=list)
    found: str = ""  # where they come from, e.g. "report of 2026-12-02 13:40 UTC"; "" without a report

    def grouping(self) -> str:
        """The sentence a split records: which duplicates it kept together."""
        if not self.found:
            return "exact duplicates only (the same bytes); no data doctor report, so near duplicates are not grouped"
        return f"exact duplicates (the same bytes) and the data doctor's near-duplicate groups ({self.found})"


def review_dir(root: str | os.PathLike) -> Path:
    """The folder of the data doctor's review of ``root`` (core.review.runner writes it)."""
    resolved = Path(root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return get_settings().home / REVIEWS_FOLDER / f"{resolved.name}-{key}"


def saved_near_duplicates(root: str | os.PathLike) -> NearDuplicates:
    """The near-duplicate groups of the doctor's saved report (its ``duplicates`` that are
    not exact, core.review.doctor.DuplicateGroup); none without a readable report."""
    path = review_dir(root) / REPORT_FILE
    record = read_json(path, expect=dict)
    if not record.ok:
        return NearDuplicates()
    try:
        groups = [
            [str(member["file"]) for member in group["files"]]
            for group in record.value["duplicates"]
            if not group["exact"]
        ]
        saved = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    except (KeyError, TypeError, OSError):
        return NearDuplicates()
    return NearDuplicates(groups, f"report of {saved}")


def duplicate_groups(info: DatasetInfo, near: NearDuplicates) -> dict[str, str]:
    """{path: its group's id} for each labelled photo with a duplicate: exact copies (the
    scan's content keys) and ``near`` groups, merged where they share a photo."""
    labelled = {sample.path for samples in info.splits.values() for sample in samples}
    parent: dict[str, str] = {}

    def root_of(path: str) -> str:
        while parent[path] != path:
            path = parent[path]
        return path

    by_content: dict[str, list[str]] = {}
    for path, key in info.content_keys.items():
        by_content.setdefault(key, []).append(path)
    for group in [*by_content.values(), *near.groups]:
        members = sorted(path for path in set(group) if path in labelled)
        for path in members:
            parent.setdefault(path, path)
        roots = sorted({root_of(path) for path in members})
        for other in roots[1:]:
            parent[other] = roots[0]
    ids = {path: root_of(path) for path in parent}
    sizes = Counter(ids.values())
    return {path: group for path, group in ids.items() if sizes[group] > 1}


@dataclass(frozen=True)
class Splits:
    classes: list[str]
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    root: str = ""  # the scanned folder; record paths are relative to it
    grouping: str = NOT_GROUPED  # which duplicates were kept in one split (NearDuplicates.grouping)

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
        "test": ..., "grouping": "exact duplicates ..."}`` with ``/``-separated paths relative to ``root`` (default: the
        scanned folder), so the record still fits the dataset copied elsewhere.
        """
        if not (root or self.root):
            raise ValueError("These splits do not know their dataset folder; pass root=.")
        base = Path(root or self.root)
        record: dict = {"classes": list(self.classes)}
        for split, samples in self.as_dict().items():
            record[str(split)] = [[Path(s.path).relative_to(base).as_posix(), s.class_name] for s in samples]
        record["grouping"] = self.grouping
        return record

    @classmethod
    def from_record(cls, record: dict, root: str | os.PathLike) -> Splits:
        """The splits a record describes, with absolute paths under ``root``; no scan, no decode.

        ``root`` is resolved as scan_dataset resolves it, so the paths equal a fresh scan's.
        A record without ``grouping`` was made before duplicates were kept together.
        """
        base = Path(root).expanduser().resolve()
        try:
            classes = [str(name) for name in record["classes"]]
            label_of = {name: index for index, name in enumerate(classes)}
            sets = {split: [_sample(entry, base, label_of) for entry in record[split]] for split in map(str, Split)}
            grouping = record.get("grouping", NOT_GROUPED)
            if not isinstance(grouping, str):
                raise TypeError(f"grouping is {grouping!r}, not a sentence")
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"The recorded split is damaged ({error}).") from None
        return cls(classes, sets[Split.TRAIN], sets[Split.VALIDATION], sets[Split.TEST], str(base), grouping)


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


def _share(photos: int, fraction: float) -> int:
    """``fraction`` of a class's photos, rounded; at least one when the class has two."""
    count = round(photos * fraction)
    return 1 if fraction > 0 and count == 0 and photos > 1 else count


def _take_per_class(
    samples: list[Sample], fraction: float, seed: int, group_of: dict[str, str] | None = None
) -> tuple[list[Sample], list[Sample]]:
    """Stratified: ``fraction`` of each class (rounded, at least one when possible) is taken,
    a group of duplicates (``group_of``: path -> group id) whole or not at all.

    Groups and single photos go in the order of their first member's rank; each is
    taken while that brings its classes closer to their share. With no groups this
    is the lowest ranks of each class, the split PawLab always made.
    """
    group_of = group_of or {}
    wanted = {name: _share(photos, fraction) for name, photos in Counter(s.class_name for s in samples).items()}
    units: dict[str, list[Sample]] = {}
    for sample in samples:
        units.setdefault(group_of.get(sample.path, sample.path), []).append(sample)
    taken_per_class: Counter[str] = Counter()
    taken, rest = [], []
    for unit in sorted(units.values(), key=lambda unit: min(_rank(s, seed) for s in unit)):
        adds = Counter(sample.class_name for sample in unit)
        missing_now = sum(abs(wanted[name] - taken_per_class[name]) for name in adds)
        missing_after = sum(abs(wanted[name] - taken_per_class[name] - count) for name, count in adds.items())
        if missing_after < missing_now:
            taken += unit
            taken_per_class.update(adds)
        else:
            rest += unit
    return _by_path(taken), _by_path(rest)


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError("Test and validation fractions must be between 0 and 1 and leave images to train on.")


def make_splits(
    info: DatasetInfo,
    seed: int = SEED,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    near_duplicates: NearDuplicates | None = None,
) -> Splits:
    """Split a scanned dataset by its ``SplitRule``, each group of duplicates in one split.

    - train/, validation/ and test/ folders: used as they are.
    - train/ and validation/: train is train/; test is ``test_fraction`` of
      validation/ (per class), validation the rest.
    - train/ and test/ (or testing/): test is the person's own test/;
      validation is ``validation_fraction`` of train/ (per class), train the rest.
    - one pool of class folders (or train/ alone): test and validation
      fractions of the whole pool are taken per class, train is the rest.

    ``near_duplicates``: groups to keep together besides exact copies; None reads
    the data doctor's saved report for the dataset (none without one).
    """
    _check_fractions(test_fraction, validation_fraction)
    folders = info.splits
    rule = SplitRule.of(info)
    near = saved_near_duplicates(info.root) if near_duplicates is None else near_duplicates
    group_of = duplicate_groups(info, near)
    grouping = near.grouping()
    if rule is SplitRule.FOLDERS:
        train, validation, test = (_by_path(folders[s]) for s in Split)
        grouping = FOLDERS_GROUPING
    elif rule is SplitRule.TEST_FROM_VALIDATION:
        test, validation = _take_per_class(folders[Split.VALIDATION], test_fraction, seed, group_of)
        train = _by_path(folders[Split.TRAIN])
    elif rule is SplitRule.VALIDATION_FROM_TRAIN:
        validation, train = _take_per_class(folders[Split.TRAIN], validation_fraction, seed, group_of)
        test = _by_path(folders[Split.TEST])
    else:
        pool = [s for samples in folders.values() for s in samples]
        test, rest = _take_per_class(pool, test_fraction, seed, group_of)
        # validation_fraction is of the whole pool, so rescale it to what is left.
        validation, train = _take_per_class(rest, validation_fraction / (1 - test_fraction), seed, group_of)
    return Splits(info.classes, train, validation, test, root=info.root, grouping=grouping)


def split_dataset(
    root: str | os.PathLike,
    seed: int = SEED,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    *,
    use_cache: bool = True,
    corrections: dict[str, str | None] | None = None,
    near_duplicates: NearDuplicates | None = None,
) -> tuple[DatasetInfo, Splits]:
    """Scan ``root`` once, apply its corrections and split it: what a training run,
    the doctor and the Dataset page all need.

    ``corrections``: a run's snapshot ({relative path: class or None}); None
    applies the dataset's current corrections file (core.data.corrections).
    ``near_duplicates``: as make_splits (None: the doctor's saved report's).
    """
    info = scan_dataset(root, use_cache=use_cache)
    if corrections is None:
        corrections = load_corrections(info.root).mapping
    info = apply_corrections(info, corrections)
    return info, make_splits(info, seed, test_fraction, validation_fraction, near_duplicates)


def subset(samples: list[Sample], per_class: int, seed: int = SEED) -> list[Sample]:
    """A stable, stratified subset of at most ``per_class`` samples of each class."""
    by_class: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: _rank(s, seed)):
        by_class.setdefault(sample.class_name, []).append(sample)
    chosen = [s for class_samples in by_class.values() for s in class_samples[:per_class]]
    return _by_path(chosen)
