"""Corrections: relabel or exclude photos without touching the user's files.

The Review page finds photos in the wrong class folder, duplicates and
photos of something else. Fixing them never moves or deletes a file: each
dataset has one corrections file under ``PAWLAB_HOME/corrections/``, shared
by everyone who uses that dataset, and every scan applies it::

    add_correction(root, "train/cats/cat.12.jpg", "dogs", author=session)   # relabel
    add_correction(root, "train/dogs/logo.jpg", None, author=session)       # exclude
    undo_last(root, author=session)    # this session's last change, not another visitor's
    info = apply_corrections(scan, load_corrections(root).mapping)

The file keeps the last HISTORY_LIMIT changes (so Undo works) and, for older
ones, only their outcome (``base``); what applies is the last word on each
photo. A training run snapshots the mapping when it is submitted
(TrainConfig.corrections), so a relabel made while it waits in the queue
does not change what it trains on.

The file may have been edited by hand or damaged: it is parsed once into the
dataclasses below. An entry that cannot be read is skipped (and counted); a
file that cannot be read at all applies nothing and says so (``problem``).
Either way the next change first keeps the file as it was, renamed to
``<name>.damaged-<time>.json`` next to it, so nothing in it is lost.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath

from core.config import get_settings
from core.data.dataset import DatasetError, DatasetInfo, Sample
from core.data.layout import POOL, Split
from core.fileio import FileLock, read_json, write_json

CORRECTIONS_FOLDER = "corrections"
EXCLUDED_REASON = "excluded by a correction (Review page)"
# Changes kept for Undo. Older ones keep only their outcome: 200,000 kept changes
# cost 3 s per relabel and 0.6 s per load; 1,000 is hours of reviewing and costs ms.
HISTORY_LIMIT = 1000


@dataclass(frozen=True)
class Correction:
    file: str  # path relative to the dataset root, "/"-separated
    label: str | None  # the class it belongs to; None: leave it out
    time: float = 0.0
    author: str = ""  # the session that made it: Undo takes back one's own

    @classmethod
    def parse(cls, entry: object) -> Correction:
        """One entry of the file; raises ValueError saying what is wrong with it."""
        if not isinstance(entry, dict):
            raise ValueError(f"is {type(entry).__name__}, not a correction")
        file, label = entry.get("file"), entry.get("label")
        if not isinstance(file, str) or not file:
            raise ValueError("names no photo")
        if "label" not in entry:
            raise ValueError("has no class")
        if label is not None and not isinstance(label, str):
            raise ValueError(f"has a class that is {type(label).__name__}")
        stamp, author = entry.get("time", 0.0), entry.get("author", "")
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise ValueError("has a time that is not a number")
        if not isinstance(author, str):
            raise ValueError("has an author that is not a name")
        return cls(file, label, float(stamp), author)


def _is_no_correction(file: str, label: str | None) -> bool:
    """A photo moved back to the class of its own folder needs no correction."""
    return label == PurePosixPath(file).parent.name


@dataclass
class Corrections:
    history: list[Correction] = field(default_factory=list)  # the kept changes, oldest first
    base: dict[str, str | None] = field(default_factory=dict)  # the outcome of older changes
    revision: int = 0  # counts saved changes: a prepared export knows when it is stale
    kept_aside: list[str] = field(default_factory=list)  # earlier files kept as they were
    problem: str | None = None  # the file cannot be read: none of it applies
    skipped: list[str] = field(default_factory=list)  # why each unreadable entry was left out

    @property
    def mapping(self) -> dict[str, str | None]:
        """The last word on each photo: {relative path: class, or None to exclude}."""
        last = dict(self.base)
        last.update((correction.file, correction.label) for correction in self.history)
        return {file: label for file, label in last.items() if not _is_no_correction(file, label)}

    @property
    def damage(self) -> str | None:
        """One sentence when the file, as it is now, cannot be read whole; else None."""
        if self.problem:
            return self.problem
        if self.skipped:
            count = len(self.skipped)
            entries = "1 entry" if count == 1 else f"{count} entries"
            return (
                f"{entries} of this dataset's corrections file could not be read and "
                f"{'is' if count == 1 else 'are'} left out (the {self.skipped[0]}); the next "
                "correction keeps the file as it is, next to the new one."
            )
        return None

    @property
    def notice(self) -> str | None:
        """``damage``, else one sentence naming the last damaged file kept aside; else None."""
        if self.damage or not self.kept_aside:
            return self.damage
        return (
            f"An earlier corrections file of this dataset could not be read whole; it is kept "
            f"as {self.kept_aside[-1]} and what could not be read from it no longer applies."
        )

    def last_by(self, author: str) -> Correction | None:
        """``author``'s most recent change still in the history."""
        return next((c for c in reversed(self.history) if c.author == author), None)

    def compact(self) -> None:
        """Fold the changes beyond HISTORY_LIMIT into ``base``: the state stays, Undo reaches less far."""
        overflow = len(self.history) - HISTORY_LIMIT
        if overflow <= 0:
            return
        for correction in self.history[:overflow]:
            self.base[correction.file] = correction.label
        del self.history[:overflow]
        self.base = {file: label for file, label in self.base.items() if not _is_no_correction(file, label)}

    def to_dict(self) -> dict:
        return {
            "revision": self.revision,
            "base": self.base,
            "history": [asdict(correction) for correction in self.history],
            "kept_aside": self.kept_aside,
        }


def corrections_file(root: str | os.PathLike) -> Path:
    """One file per dataset folder, named after it and keyed by its resolved path."""
    resolved = Path(root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return get_settings().home / CORRECTIONS_FOLDER / f"{resolved.name}-{key}.json"


def _damaged(reason: str) -> Corrections:
    return Corrections(
        problem=f"This dataset's corrections file {reason}, so none of its corrections apply; "
        "the next correction keeps it as it is, next to a new one."
    )


def _parse_base(record: object, skipped: list[str]) -> dict[str, str | None]:
    if not isinstance(record, dict):
        raise ValueError(f"its state is {type(record).__name__}, not a table")
    base: dict[str, str | None] = {}
    for file, label in record.items():
        if label is None or isinstance(label, str):
            base[file] = label
        else:
            skipped.append(f"state of {file} is {type(label).__name__}, not a class")
    return base


def _parse(record: dict) -> Corrections:
    """The file's dict as Corrections; raises ValueError when its shape is wrong."""
    entries = record.get("history", [])
    if not isinstance(entries, list):
        raise ValueError(f"its history is {type(entries).__name__}, not a list")
    skipped: list[str] = []
    base = _parse_base(record.get("base", {}), skipped)
    history = []
    for number, entry in enumerate(entries, start=1):
        try:
            history.append(Correction.parse(entry))
        except ValueError as error:
            skipped.append(f"correction number {number} {error}")
    revision = record.get("revision")
    kept_aside = record.get("kept_aside", [])
    return Corrections(
        history=history,
        base=base,
        revision=revision if isinstance(revision, int) else len(entries),  # older files had none
        kept_aside=[name for name in kept_aside if isinstance(name, str)] if isinstance(kept_aside, list) else [],
        skipped=skipped,
    )


def load_corrections(root: str | os.PathLike) -> Corrections:
    """The dataset's corrections: none when there is no file; a damaged one says so."""
    path = corrections_file(root)
    record = read_json(path)
    if not record.ok:
        return Corrections() if not path.exists() else _damaged(str(record.problem))
    try:
        return _parse(record.value)
    except ValueError as error:
        return _damaged(f"{path.name} is damaged ({error})")


def _relative(root: Path, file: str | os.PathLike) -> str:
    """A photo's path relative to the root, refusing anything outside it."""
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            raise DatasetError(f"{Path(file).name} is not a photo of this dataset.") from None
    relative = PurePosixPath(path.as_posix())
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise DatasetError(f"{file} is not a photo of this dataset.")
    return str(relative)


def _keep_aside(path: Path) -> str:
    """Rename the damaged file next to itself, never over one kept before (we hold the lock)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, number = path.with_name(f"{path.stem}.damaged-{stamp}.json"), 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.stem}.damaged-{stamp}-{number}.json")
    os.replace(path, target)
    return target.name


def _change(root: str | os.PathLike, edit: Callable[[Corrections], object]) -> Corrections:
    """Read, edit and write the file whole, holding its lock: no change is lost to another."""
    path = corrections_file(root)
    with FileLock(path.with_suffix(".lock"), what="this dataset's corrections"):
        corrections = load_corrections(root)
        if corrections.problem or corrections.skipped:  # rewriting would lose what we cannot read
            corrections.kept_aside.append(_keep_aside(path))
            corrections.problem, corrections.skipped = None, []
        edit(corrections)
        corrections.revision += 1
        corrections.compact()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, corrections.to_dict())
    return corrections


def add_correction(
    root: str | os.PathLike,
    file: str | os.PathLike,
    label: str | None,
    classes: list[str] | None = None,
    author: str = "",
) -> Corrections:
    """Relabel ``file`` to ``label`` (one of ``classes`` when given), or exclude it (None).

    ``author``: who makes the change (a page passes its session's id), for Undo.
    """
    resolved = Path(root).expanduser().resolve()
    relative = _relative(resolved, file)
    if not (resolved / relative).is_file():
        raise DatasetError(f"There is no photo {relative} in this dataset.")
    if label is not None and classes is not None and label not in classes:
        raise DatasetError(f"{label!r} is not a class of this dataset.")
    correction = Correction(relative, label, time.time(), author)
    return _change(resolved, lambda corrections: corrections.history.append(correction))


def undo_last(root: str | os.PathLike, author: str) -> Correction | None:
    """Take back ``author``'s most recent change, never another visitor's.

    Returns the change taken back; None when ``author`` has none left in the history.
    """
    undone: list[Correction] = []

    def remove_own(corrections: Corrections) -> None:
        last = corrections.last_by(author)
        if last is not None:
            index = len(corrections.history) - 1 - corrections.history[::-1].index(last)
            undone.append(corrections.history.pop(index))

    _change(root, remove_own)
    return undone[0] if undone else None


def clear_corrections(root: str | os.PathLike) -> Corrections:
    """No corrections at all (files kept aside stay on disk, no longer mentioned)."""

    def clear(corrections: Corrections) -> None:
        corrections.history.clear()
        corrections.base.clear()
        corrections.kept_aside.clear()

    return _change(root, clear)


def apply_corrections(info: DatasetInfo, mapping: dict[str, str | None]) -> DatasetInfo:
    """``info`` with relabelled photos in their new class and excluded ones listed as skipped.

    A relabel to a class the dataset does not have is ignored (the class
    folder may have been renamed since): the photo keeps its folder's class.
    """
    if not mapping:
        return info
    root = Path(info.root)
    label_of = {name: index for index, name in enumerate(info.classes)}
    splits: dict[str, list[Sample]] = {}
    skipped = list(info.skipped)
    for split, samples in info.splits.items():
        kept = []
        for sample in samples:
            relative = Path(sample.path).relative_to(root).as_posix()
            new_class = mapping.get(relative, sample.class_name)
            if relative not in mapping:
                kept.append(sample)
            elif new_class is None:
                skipped.append((relative, EXCLUDED_REASON))
            elif new_class in label_of:
                kept.append(Sample(sample.path, label_of[new_class], new_class))
            else:
                kept.append(sample)
        splits[split] = kept
    unlabeled = _label_unlabeled(info, mapping, label_of, splits, skipped)
    return replace(info, splits=splits, skipped=skipped, unlabeled=unlabeled)  # content keys kept


def _label_unlabeled(
    info: DatasetInfo,
    mapping: dict[str, str | None],
    label_of: dict[str, int],
    splits: dict[str, list[Sample]],
    skipped: list[tuple[str, str]],
) -> list[str]:
    """Unlabelled photos a correction gave a class join the training photos (train/ when
    the dataset has one, else the pool the split divides); excluded ones are skipped.
    Returns the photos still without a class."""
    root = Path(info.root)
    pool = Split.TRAIN if Split.TRAIN in splits else next(iter(splits), POOL)
    still = []
    for path in info.unlabeled:
        relative = Path(path).relative_to(root).as_posix()
        new_class = mapping.get(relative, "")
        if relative in mapping and new_class is None:
            skipped.append((relative, EXCLUDED_REASON))
        elif new_class in label_of:
            splits.setdefault(pool, []).append(Sample(path, label_of[new_class], new_class))
        else:
            still.append(path)
    if len(still) != len(info.unlabeled):
        splits[pool].sort(key=lambda sample: sample.path)
    return still


def export_corrected_zip(
    root: str | os.PathLike, target: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> Path:
    """A zip of the dataset as its corrections describe it: relabelled photos in
    their new class folder, excluded ones left out, the split folders kept.

    Photos are stored, not deflated (JPEGs do not compress), and the zip is
    written to a temp file and renamed: a reader never sees half of it.
    """
    from core.data.dataset import scan_dataset
    from core.data.layout import POOL

    info = apply_corrections(scan_dataset(root), load_corrections(root).mapping)
    members = [(split, sample) for split, samples in info.splits.items() for sample in samples]
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    used: set[str] = set()
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for done, (split, sample) in enumerate(members, start=1):
            folder = sample.class_name if split == POOL else f"{split}/{sample.class_name}"
            name = f"{folder}/{Path(sample.path).name}"
            while name in used:  # a relabelled photo whose name the class already has
                name = f"{folder}/corrected-{len(used)}-{Path(sample.path).name}"
            used.add(name)
            archive.write(sample.path, name)
            if progress is not None:
                progress(done, len(members))
    os.replace(partial, target)
    return target
