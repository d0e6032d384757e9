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
Photos in an ``unlabeled/`` (or ``unlabelled/``) folder are decoded and
checked the same way and kept in ``DatasetInfo.unlabeled``: shown, counted and
offered for labelling, never trained on. A class folder whose name would break
the text files a class travels into (a line break in ``labels.txt``) is
refused with a sentence; such a file is skipped with the reason.

Decode results and each file's content hash (sha256: duplicates are found and
kept in one split by content, not by name) are cached on disk per dataset
folder, per file, keyed by its name, size and modification time: a photo
added to a big dataset costs one decode, not a rescan.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from core.config import get_settings
from core.data.images import check_image
from core.data.layout import (
    POOL,
    Split,
    is_image_name,
    is_junk_name,
    is_unlabeled_folder,
    split_of,
    unsafe_name_reason,
)
from core.fileio import file_sha256, read_json, write_json

# Scan caches live in PAWLAB_HOME/cache/<this>/<fingerprint>.json.
SCAN_CACHE_FOLDER = "scans"
# Bumped when a cache file's content changes meaning; older caches are scanned again.
SCAN_CACHE_VERSION = 2
# Hex digits of the folder's hash in a cache file name: plenty to never collide.
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
    # Readable photos without a class (absolute paths): never in a split.
    unlabeled: list[str] = field(default_factory=list)
    # sha256 of each readable photo's bytes, by absolute path (labelled and unlabelled).
    content_keys: dict[str, str] = field(default_factory=dict)

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
            "unlabeled": len(self.unlabeled),
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
    unlabeled_dir: Path | None = None


def _layout(root: Path) -> _Layout:
    base = find_dataset_root(root)
    found: dict[Split, Path] = {}
    unused: dict[Path, str] = {}
    others = []
    unlabeled_dir = None
    for folder in _visible_dirs(base):
        split = split_of(folder.name)
        if is_unlabeled_folder(folder.name) and unlabeled_dir is None:
            unlabeled_dir = folder
        elif split is None:
            others.append(folder)
        elif split in found:
            unused[folder] = f"in {folder.name}/, a second {split} folder; {found[split].name}/ is the {split} set"
        else:
            found[split] = folder
    if not found:
        return _Layout({POOL: base}, unlabeled_dir=unlabeled_dir)
    if Split.TRAIN not in found:
        names = ", ".join(f"{folder.name}/" for folder in found.values())
        raise DatasetError(
            f"{base} has {names} but no train/ folder. Put the training photos in "
            "train/<class>/ next to it, or use one folder per class and no split folders."
        )
    for folder in others:
        unused[folder] = f"in {folder.name}/, which is not a split folder (train/, validation/ or test/)"
    ordered: dict[str, Path] = {split: found[split] for split in Split if split in found}
    return _Layout(ordered, unused, unlabeled_dir)


# --- Checking the files ---------------------------------------------------------


def scan_cache_file(root: Path) -> Path:
    """Where the checks of the files under ``root`` are kept (one file per dataset folder)."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:_FINGERPRINT_CHARS]
    return get_settings().cache_dir / SCAN_CACHE_FOLDER / f"{digest}.json"


class FileCheck(NamedTuple):
    """What the scan learns of one file: why it cannot be used (None: it can), and its sha256."""

    problem: str | None
    content_key: str


def check_file(path: Path) -> FileCheck:
    """Decode ``path`` as training will, and hash its bytes (read again from the page cache)."""
    problem = unsafe_name_reason(path.name)
    if problem:
        return FileCheck(f"its name cannot be used: {problem}", "")
    problem = check_image(path)
    try:
        return FileCheck(problem, file_sha256(path))
    except OSError as error:
        return FileCheck(problem or f"it cannot be read ({error.strerror or error})", "")


def _parse_check(entry) -> FileCheck | None:
    if not (isinstance(entry, list) and len(entry) == 2):
        return None
    problem, key = entry
    if (problem is None or isinstance(problem, str)) and isinstance(key, str):
        return FileCheck(problem, key)
    return None


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _parse_entry(entry) -> tuple[tuple[int, int], FileCheck] | None:
    """One cached ``[size, mtime_ns, problem, key]``, or None when it is not one."""
    if not (isinstance(entry, list) and len(entry) == 4):
        return None
    size, mtime, problem, key = entry
    if not (isinstance(size, int) and isinstance(mtime, int) and isinstance(key, str)):
        return None
    if problem is not None and not isinstance(problem, str):
        return None
    return (size, mtime), FileCheck(problem, key)


def _read_scan_cache(cache_file: Path) -> dict[str, tuple[tuple[int, int], FileCheck]]:
    """{relative path: ((size, mtime_ns), check)}; a damaged or older cache is empty, entry by entry."""
    cached = read_json(cache_file, expect=dict)
    if not cached.ok or cached.value.get("version") != SCAN_CACHE_VERSION:
        return {}
    entries = cached.value.get("files")
    if not isinstance(entries, dict):
        return {}
    parsed = {name: _parse_entry(entry) for name, entry in entries.items()}
    return {name: entry for name, entry in parsed.items() if entry is not None}


def write_scan_cache(cache_file: Path, entries: dict[str, tuple[tuple[int, int], FileCheck]]) -> None:
    """Keep the checks; several processes may write the same file at once (the last one wins)."""
    files = {name: [*stamp, *check] for name, (stamp, check) in entries.items()}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_file, {"version": SCAN_CACHE_VERSION, "files": files})
    except OSError:
        pass  # a cache: a full or read-only disk costs a re-decode next time, nothing else


def _check_files(root: Path, files: list[Path], use_cache: bool) -> list[FileCheck]:
    """Each file's check; a file whose size and time are those cached is not decoded again,
    so a photo added to a big dataset costs one decode."""
    cache_file = scan_cache_file(root)
    cached = _read_scan_cache(cache_file) if use_cache else {}
    names = [path.relative_to(root).as_posix() for path in files]
    stamps = [_stamp(path) for path in files]
    fresh = {
        index
        for index, (name, stamp) in enumerate(zip(names, stamps))
        if name not in cached or cached[name][0] != stamp
    }
    # Pillow releases the GIL while decoding: threads give real parallelism;
    # images.DECODE_BUDGET keeps their decoded bytes together under the budget.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        computed = dict(zip(sorted(fresh), pool.map(check_file, [files[index] for index in sorted(fresh)])))
    checks = [computed[index] if index in fresh else cached[name][1] for index, name in enumerate(names)]
    if fresh or len(cached) != len(files):
        write_scan_cache(cache_file, {name: (stamp, check) for name, stamp, check in zip(names, stamps, checks)})
    return checks


def _skip_reason(path: Path, unused: dict[Path, str]) -> str:
    for folder, reason in unused.items():
        if folder in path.parents:
            return reason
    return NOT_IN_A_CLASS_FOLDER


def _class_folders(layout: _Layout) -> list[tuple[str, Path]]:
    """(split, class folder) for each class folder; a name that cannot travel is refused."""
    folders = []
    for split, split_dir in layout.split_dirs.items():
        for class_dir in _visible_dirs(split_dir):
            if split == POOL and class_dir == layout.unlabeled_dir:
                continue
            problem = unsafe_name_reason(class_dir.name)
            if problem:
                raise DatasetError(
                    f"The class folder {class_dir.name!r} in {split_dir} cannot be a class: {problem}. Rename it."
                )
            folders.append((split, class_dir))
    return folders


def scan_dataset(root: str | os.PathLike, *, use_cache: bool = True) -> DatasetInfo:
    """Find classes and usable images under ``root``; skipped files keep their reason."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    layout = _layout(root)

    candidates: list[tuple[str | None, str, Path]] = []  # (split or None: unlabelled, class name, file)
    class_folders = _class_folders(layout)
    for split, class_dir in class_folders:
        candidates += [(split, class_dir.name, path) for path in _visible_files(class_dir)]
    if layout.unlabeled_dir is not None:
        candidates += [(None, "", path) for path in _visible_files(layout.unlabeled_dir)]
    classes = sorted({class_dir.name for _, class_dir in class_folders})
    if not classes and layout.unlabeled_dir is None:
        raise DatasetError(
            f"No class folders found in {root}. Expected class_name/*.jpg, "
            "optionally inside train/, validation/ and test/."
        )

    checks = _check_files(root, [path for _, _, path in candidates], use_cache)
    label_of = {name: index for index, name in enumerate(classes)}
    info = DatasetInfo(root=str(root), classes=classes, splits={split: [] for split in layout.split_dirs})
    used = set()
    for (in_split, class_name, path), check in zip(candidates, checks):
        used.add(path)
        if check.problem:
            info.skipped.append((str(path.relative_to(root)), check.problem))
            continue
        info.content_keys[str(path)] = check.content_key
        if in_split is None:
            info.unlabeled.append(str(path))
        else:
            info.splits[in_split].append(Sample(str(path), label_of[class_name], class_name))
    info.skipped += [
        (str(path.relative_to(root)), _skip_reason(path, layout.unused))
        for path in _visible_files(root)
        if path not in used
    ]
    # Empty class folders are a dataset being made (core.data.maker); files none of which decode are not.
    if candidates and not any(info.splits.values()) and not info.unlabeled:
        raise DatasetError(f"No readable images found in {root}.")
    return info
