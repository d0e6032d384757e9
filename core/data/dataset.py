"""Scanning a photo dataset: which classes, which files, which to skip and why.

A dataset is a folder of class folders (``root/cats/*.jpg``), optionally
under split folders (``root/train/cats``, ``root/validation/cats``,
``root/test/cats``; the names core.data.layout knows, ``training/``,
``val/``, ``testing/``... included), the layout of Google's
``cats_and_dogs_filtered``. Class names come from the folder names.

Every file is decoded once with the same code the training pipeline uses, so
an unreadable file is reported here and never reaches a training run. Every
visible file the scan does not use (a photo in an unknown folder next to
``train/``, a second ``test/`` folder, a file outside any class folder) is
listed in ``DatasetInfo.skipped`` with the reason: nothing vanishes silently.
Decode results are cached on disk, keyed by the files' names, sizes and
modification times.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.config import get_settings
from core.data.images import check_image
from core.data.layout import POOL, Split, is_image_name, is_junk_name, split_of
from core.fileio import read_json, write_json

# Scan caches live in PAWLAB_HOME/cache/<this>/<fingerprint>.json.
SCAN_CACHE_FOLDER = "scans"
# Hex digits of the files' fingerprint in a cache file name: plenty to never collide.
_FINGERPRINT_CHARS = 24
# Zips wrap their content in a few folders at most; the bound also stops symlink loops.
MAX_WRAPPER_DEPTH = 8

NOT_IN_A_CLASS_FOLDER = "not inside a class folder"


@dataclass(frozen=True)
class Sample:
    path: str  # absolute path
    label: int
    class_name: str


@dataclass
class DatasetInfo:
    root: str
    classes: list[str]
    # Split.TRAIN / VALIDATION / TEST for each split folder found, else POOL ("all").
    splits: dict[str, list[Sample]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    @property
    def num_images(self) -> int:
        return sum(len(samples) for samples in self.splits.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class_name: number of usable images}}."""
        counts = {}
        for split, samples in self.splits.items():
            per_class = dict.fromkeys(self.classes, 0)
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


# --- Finding the folders ------------------------------------------------------


def _visible_entries(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(entry.path) for entry in entries if not is_junk_name(entry.name))


def _visible_dirs(folder: Path) -> list[Path]:
    return [entry for entry in _visible_entries(folder) if entry.is_dir()]


def _visible_files(folder: Path) -> list[Path]:
    """Every non-junk file below ``folder``, in a stable order."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_junk_name(d))
        files += [Path(dirpath) / name for name in sorted(filenames) if not is_junk_name(name)]
    return files


def find_dataset_root(folder: str | os.PathLike) -> Path:
    """Unwrap single wrapper folders, e.g. ``extracted/cats_and_dogs_filtered``.

    A root is the first level that holds split folders, several folders,
    image files, or a single folder that is itself a class of images.
    """
    current = Path(folder)
    for _ in range(MAX_WRAPPER_DEPTH):
        entries = _visible_entries(current)
        subdirs = [entry for entry in entries if entry.is_dir()]
        if len(subdirs) != 1 or split_of(subdirs[0].name):
            return current
        if any(is_image_name(entry.name) and entry.is_file() for entry in entries):
            return current
        only = subdirs[0]
        if not _visible_dirs(only):
            return current  # `only` is a class folder, not a wrapper
        current = only
    return current


@dataclass
class _Layout:
    """Where each split's class folders are, and the folders the scan leaves out."""

    split_dirs: dict[str, Path]
    unused: dict[Path, str] = field(default_factory=dict)  # folder -> why its files are skipped


def _layout(root: Path) -> _Layout:
    base = find_dataset_root(root)
    found: dict[Split, Path] = {}
    unused: dict[Path, str] = {}
    others = []
    for folder in _visible_dirs(base):
        split = split_of(folder.name)
        if split is None:
            others.append(folder)
        elif split in found:
            unused[folder] = f"in {folder.name}/, a second {split} folder; {found[split].name}/ is the {split} set"
        else:
            found[split] = folder
    if not found:
        return _Layout({POOL: base})
    if Split.TRAIN not in found:
        names = ", ".join(f"{folder.name}/" for folder in found.values())
        raise DatasetError(
            f"{base} has {names} but no train/ folder. Put the training photos in "
            "train/<class>/ next to it, or use one folder per class and no split folders."
        )
    for folder in others:
        unused[folder] = f"in {folder.name}/, which is not a split folder (train/, validation/ or test/)"
    ordered: dict[str, Path] = {split: found[split] for split in Split if split in found}
    return _Layout(ordered, unused)


# --- Checking the files ---------------------------------------------------------


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:_FINGERPRINT_CHARS]


def scan_cache_file(files: list[Path]) -> Path:
    """Where the decode results of exactly these files (names, sizes, times) are kept."""
    return get_settings().cache_dir / SCAN_CACHE_FOLDER / f"{_fingerprint(files)}.json"


def _read_scan_cache(cache_file: Path, count: int) -> list[str | None] | None:
    """The cached reasons, or None when the cache is missing, damaged or for other files."""
    cached = read_json(cache_file, expect=list)
    if not cached.ok or len(cached.value) != count:
        return None
    if not all(reason is None or isinstance(reason, str) for reason in cached.value):
        return None
    return cached.value


def write_scan_cache(cache_file: Path, reasons: list[str | None]) -> None:
    """Keep decode results; several processes may write the same file at once."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_file, reasons)
    except OSError:
        pass  # a cache: a full or read-only disk costs a re-decode next time, nothing else


def _decode_problems(files: list[Path], use_cache: bool) -> list[str | None]:
    """For each file, None when it decodes, else the reason; from the cache when it can."""
    cache_file = scan_cache_file(files)
    reasons = _read_scan_cache(cache_file, len(files)) if use_cache else None
    if reasons is None:
        # Pillow releases the GIL while decoding: threads give real parallelism;
        # images.DECODE_BUDGET keeps their decoded bytes together under the budget.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            reasons = list(pool.map(check_image, files))
        write_scan_cache(cache_file, reasons)
    return reasons


def _skip_reason(path: Path, unused: dict[Path, str]) -> str:
    for folder, reason in unused.items():
        if folder in path.parents:
            return reason
    return NOT_IN_A_CLASS_FOLDER


def scan_dataset(root: str | os.PathLike, *, use_cache: bool = True) -> DatasetInfo:
    """Find classes and usable images under ``root``; skipped files keep their reason."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    layout = _layout(root)

    candidates: list[tuple[str, str, Path]] = []  # (split, class name, file)
    class_names: set[str] = set()
    for split, split_dir in layout.split_dirs.items():
        for class_dir in _visible_dirs(split_dir):
            class_names.add(class_dir.name)
            candidates += [(split, class_dir.name, path) for path in _visible_files(class_dir)]
    classes = sorted(class_names)
    if not classes:
        raise DatasetError(
            f"No class folders found in {root}. Expected class_name/*.jpg, "
            "optionally inside train/, validation/ and test/."
        )

    reasons = _decode_problems([path for _, _, path in candidates], use_cache)
    label_of = {name: index for index, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = {split: [] for split in layout.split_dirs}
    skipped: list[tuple[str, str]] = []
    used = set()
    for (split, class_name, path), reason in zip(candidates, reasons):
        used.add(path)
        if reason:
            skipped.append((str(path.relative_to(root)), reason))
        else:
            splits[split].append(Sample(str(path), label_of[class_name], class_name))
    skipped += [
        (str(path.relative_to(root)), _skip_reason(path, layout.unused))
        for path in _visible_files(root)
        if path not in used
    ]
    if not any(splits.values()):
        raise DatasetError(f"No readable images found in {root}.")
    return DatasetInfo(root=str(root), classes=classes, splits=splits, skipped=skipped)
