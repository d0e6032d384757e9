"""Scanning a photo dataset: which classes, which files, which to skip and why.

A dataset is a folder of class folders (``root/cats/*.jpg``), optionally
under split folders (``root/train/cats``, ``root/validation/cats``), the
layout of Google's ``cats_and_dogs_filtered``. Class names come from the
folder names. Every file is decoded once with the same code the training
pipeline uses, so an unreadable file is reported here and never reaches a
training run. Scan results are cached on disk, keyed by the files' names,
sizes and modification times.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.config import get_settings
from core.data.images import check_image

SPLIT_FOLDERS = ("train", "validation", "test")
# Folder names that mean "validation" in common layouts.
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                 "val": "validation", "valid": "validation", "test": "test"}
IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Sample:
    path: str  # absolute path
    label: int
    class_name: str


@dataclass
class DatasetInfo:
    root: str
    classes: list[str]
    # "train" / "validation" / "test" when the folder has split folders, else "all".
    splits: dict[str, list[Sample]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    @property
    def num_images(self) -> int:
        return sum(len(samples) for samples in self.splits.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class_name: number of usable images}}."""
        counts = {}
        for split, samples in self.splits.items():
            per_class = {name: 0 for name in self.classes}
            for sample in samples:
                per_class[sample.class_name] += 1
            counts[split] = per_class
        return counts

    def summary(self) -> dict:
        return {
            "root": self.root,
            "classes": self.classes,
            "counts": self.counts(),
            "total_images": self.num_images,
            "skipped": [{"file": name, "reason": reason} for name, reason in self.skipped],
        }


class DatasetError(ValueError):
    """A folder that is not a usable dataset; the message is meant for a person."""


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES
    )


def _visible_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in IGNORED_NAMES)
        for name in sorted(filenames):
            if not name.startswith(".") and name not in IGNORED_NAMES:
                files.append(Path(dirpath) / name)
    return files


def _layout(root: Path) -> dict[str, Path]:
    """Map split name -> folder holding class folders."""
    subdirs = _visible_dirs(root)
    split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    if "train" in split_dirs:
        return split_dirs
    if len(subdirs) == 1 and not any(f.is_file() for f in root.iterdir() if not f.name.startswith(".")):
        return _layout(subdirs[0])  # a zip's single wrapper folder
    return {"all": root}


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def scan_dataset(root: str | os.PathLike, *, use_cache: bool = True) -> DatasetInfo:
    """Find classes and usable images under ``root``; skipped files keep their reason."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    split_dirs = _layout(root)

    candidates: list[tuple[str, str, Path]] = []  # (split, class name, file)
    stray: list[Path] = []
    class_names: set[str] = set()
    for split, split_dir in split_dirs.items():
        for entry in split_dir.iterdir():
            if entry.is_file() and not entry.name.startswith("."):
                stray.append(entry)
        for class_dir in _visible_dirs(split_dir):
            class_names.add(class_dir.name)
            for path in _visible_files(class_dir):
                candidates.append((split, class_dir.name, path))
    if not class_names:
        raise DatasetError(
            f"No class folders found in {root}. Expected class_name/*.jpg, "
            "optionally inside train/ and validation/."
        )

    files = [path for _, _, path in candidates]
    cache_file = get_settings().cache_dir / "scans" / f"{_fingerprint(files)}.json"
    reasons = None
    if use_cache and cache_file.exists():
        reasons = json.loads(cache_file.read_text())
    if reasons is None:
        # Pillow releases the GIL while decoding: threads give real parallelism.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            reasons = list(pool.map(check_image, files))
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(reasons))
        os.replace(tmp, cache_file)

    classes = sorted(class_names)
    label_of = {name: index for index, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = {split: [] for split in split_dirs}
    skipped = [(str(p.relative_to(root)), "not inside a class folder") for p in stray]
    for (split, class_name, path), reason in zip(candidates, reasons):
        if reason:
            skipped.append((str(path.relative_to(root)), reason))
        else:
            splits[split].append(Sample(str(path), label_of[class_name], class_name))
    if not any(splits.values()):
        raise DatasetError(f"No readable images found in {root}.")
    return DatasetInfo(root=str(root), classes=classes, splits=splits, skipped=skipped)
