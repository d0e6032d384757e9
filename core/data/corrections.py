"""Corrections: relabel or exclude photos without touching the user's files.

The Review page finds photos in the wrong class folder, duplicates and
photos of something else. Fixing them never moves or deletes a file: each
dataset has one corrections file under ``PAWLAB_HOME/corrections/``, shared
by everyone who uses that dataset, and every scan applies it::

    add_correction(root, "train/cats/cat.12.jpg", "dogs")   # relabel
    add_correction(root, "train/dogs/logo.jpg", None)       # exclude
    undo_last(root)
    info = apply_corrections(scan, load_corrections(root).mapping)

The file keeps the history (so Undo works); what applies is the last word
on each photo. A training run snapshots the mapping when it is submitted
(TrainConfig.corrections), so a relabel made while it waits in the queue
does not change what it trains on.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from core.config import get_settings
from core.data.dataset import DatasetError, DatasetInfo, Sample
from core.fileio import FileLock, read_json, write_json

CORRECTIONS_FOLDER = "corrections"
EXCLUDED_REASON = "excluded by a correction (Review page)"


@dataclass(frozen=True)
class Correction:
    file: str  # path relative to the dataset root, "/"-separated
    label: str | None  # the class it belongs to; None: leave it out
    time: float = 0.0


@dataclass
class Corrections:
    history: list[Correction] = field(default_factory=list)

    @property
    def mapping(self) -> dict[str, str | None]:
        """The last word on each photo: {relative path: class, or None to exclude}.

        A photo moved back to the class of its own folder needs no correction.
        """
        last = {correction.file: correction.label for correction in self.history}
        return {file: label for file, label in last.items() if label != PurePosixPath(file).parent.name}

    def to_dict(self) -> dict:
        return {"history": [asdict(correction) for correction in self.history]}


def corrections_file(root: str | os.PathLike) -> Path:
    """One file per dataset folder, named after it and keyed by its resolved path."""
    resolved = Path(root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return get_settings().home / CORRECTIONS_FOLDER / f"{resolved.name}-{key}.json"


def load_corrections(root: str | os.PathLike) -> Corrections:
    """The dataset's corrections; none when there is no file or it is damaged."""
    record = read_json(corrections_file(root))
    if not record.ok:
        return Corrections()
    history = []
    for entry in record.value.get("history", []):
        try:
            history.append(Correction(str(entry["file"]), entry["label"], float(entry.get("time", 0))))
        except (KeyError, TypeError, ValueError):
            continue  # a hand-edited entry we cannot read is skipped, not fatal
    return Corrections(history)


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


def _change(root: str | os.PathLike, edit) -> Corrections:
    path = corrections_file(root)
    with FileLock(path.with_suffix(".lock"), what="this dataset's corrections"):
        corrections = load_corrections(root)
        edit(corrections)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, corrections.to_dict())
    return corrections


def add_correction(
    root: str | os.PathLike, file: str | os.PathLike, label: str | None, classes: list[str] | None = None
) -> Corrections:
    """Relabel ``file`` to ``label`` (one of ``classes`` when given), or exclude it (None)."""
    resolved = Path(root).expanduser().resolve()
    relative = _relative(resolved, file)
    if not (resolved / relative).is_file():
        raise DatasetError(f"There is no photo {relative} in this dataset.")
    if label is not None and classes is not None and label not in classes:
        raise DatasetError(f"{label!r} is not a class of this dataset.")
    correction = Correction(relative, label, time.time())
    return _change(resolved, lambda corrections: corrections.history.append(correction))


def undo_last(root: str | os.PathLike) -> Corrections:
    """Take back the most recent correction (nothing happens when there is none)."""
    return _change(root, lambda corrections: corrections.history and corrections.history.pop())


def clear_corrections(root: str | os.PathLike) -> Corrections:
    return _change(root, lambda corrections: corrections.history.clear())


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
    return DatasetInfo(root=info.root, classes=info.classes, splits=splits, skipped=skipped)


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
