"""A dataset made in PawLab: classes a person names and fills from drops and the camera.

Teachable Machine's habit: name a few classes, then add photos to each, a
drop or a camera snapshot at a time. PawLab keeps such a dataset where it
keeps every other one, ``PAWLAB_HOME/datasets/NAME``, in the layout every
page already reads (one folder per class, ``unlabeled/`` for photos without
one), so browsing, the doctor, training and classifying work on it unchanged::

    root = new_dataset("garden birds", ["robin", "blue tit"])
    report = add_photos(root, "robin", [("IMG_1.jpg", data), ...])  # AddReport: added, skipped
    add_photos(root, None, [...])                    # unlabelled, for the Label view
    rename_class(root, "blue tit", "blue_tit")
    remove_class(root, "robin")                      # its photos become unlabelled: nothing lost
    move_photo(root, "unlabeled/x_ab12cd34ef56ab78.jpg", "robin")

Every photo is decoded on arrival (the scan's own check) and named
``<stem>_<first 16 hex digits of its sha256>.<format's suffix>``, so a photo
already in the dataset is found by its name, wherever it is, and refused
with where it is. Datasets PawLab did not make (downloads, zip imports,
folders on the server) are never changed here: their fixes are corrections
(core.data.corrections). Writes hold the dataset's lock, so two sessions
adding at once both keep their photos.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import string
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.config import Settings, get_settings
from core.data.acquire import (
    COMPLETE_MARKER,
    IMPORT_INFIX,
    bytes_in_datasets,
    dataset_lock,
    safe_dataset_name,
    writing_into,
)
from core.data.dataset import DatasetError
from core.data.download import format_size
from core.data.images import check_image
from core.data.layout import UNLABELED_FOLDERS, is_image_name, is_junk_name, split_of, unsafe_name_reason
from core.fileio import atomic_write, file_sha256, read_json

# What the .complete marker of a dataset PawLab may change says in "source".
MADE_SOURCE = "made in PawLab"
# The folder that holds a made dataset's photos without a class.
UNLABELED_FOLDER = "unlabeled"
# Hex digits of a photo's sha256 in its file name: 64 bits, no collision in any real dataset.
KEY_CHARS = 16
_KEYED_NAME = re.compile(rf"_([0-9a-f]{{{KEY_CHARS}}})\.[a-z]+$")
MAX_CLASS_NAME_CHARS = 64
MAX_CLASSES = 100
# Characters of an uploaded file's name kept in the stored name (the rest is the key).
MAX_STEM_CHARS = 40
# The suffix a photo is stored under, from what Pillow finds inside it (not its name).
NOT_A_PHOTO = "it is not a photo PawLab can read (JPEG, PNG, GIF, BMP or WebP)"
SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


@dataclass(frozen=True)
class Skipped:
    name: str  # as it was uploaded
    reason: str


@dataclass
class AddReport:
    """What became of a drop: stored photos (paths relative to the dataset) and the others, why."""

    added: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"added": self.added, "skipped": [asdict(entry) for entry in self.skipped]}


# --- Names ----------------------------------------------------------------------


def check_class_name(name: str) -> str:
    """The class name a person typed, trimmed, or DatasetError with why it cannot be one."""
    text = str(name).strip()
    problem = unsafe_name_reason(text)
    if problem:
        raise DatasetError(f"{text!r} cannot be a class name: {problem}.")
    if not any(character.isalnum() for character in text):
        raise DatasetError(f"{text!r} cannot be a class name: it needs a letter or a digit.")
    if "/" in text or "\\" in text:
        raise DatasetError(f"{text!r} cannot be a class name: it holds a path separator (/ or \\).")
    if len(text) > MAX_CLASS_NAME_CHARS:
        raise DatasetError(f"A class name has at most {MAX_CLASS_NAME_CHARS} characters; {text[:20]!r}... has more.")
    if text.lower() in UNLABELED_FOLDERS or split_of(text) or is_junk_name(text):
        raise DatasetError(f"{text!r} cannot be a class name: PawLab reads a folder of that name differently.")
    return text


def _check_class_names(names: Iterable[str]) -> list[str]:
    checked = [check_class_name(name) for name in names]
    lowered = [name.lower() for name in checked]
    repeated = sorted({name for name in checked if lowered.count(name.lower()) > 1})
    if repeated:
        raise DatasetError(f"The class {repeated[0]!r} is named twice (names are compared ignoring case).")
    if len(checked) > MAX_CLASSES:
        raise DatasetError(f"A dataset has at most {MAX_CLASSES} classes, not {len(checked)}.")
    return checked


# --- Which datasets may change --------------------------------------------------


def is_editable(root: str | os.PathLike) -> bool:
    """Whether PawLab made this dataset (and so may add, move and remove its photos)."""
    marker = read_json(Path(root) / COMPLETE_MARKER, expect=dict)
    return marker.ok and marker.value.get("source") == MADE_SOURCE


def _editable_root(root: str | os.PathLike, settings: Settings) -> Path:
    path = Path(root).resolve()
    if path.parent != settings.datasets_dir.resolve() or not is_editable(path):
        raise DatasetError(
            f"{path.name!r} was not made in PawLab, so its photos stay as they are; "
            "relabel or exclude them as corrections instead."
        )
    return path


@contextlib.contextmanager
def _changing(root: str | os.PathLike, settings: Settings | None) -> Iterator[Path]:
    """A dataset PawLab made, held under its lock while it changes (a full disk: one sentence)."""
    settings = settings or get_settings()
    path = _editable_root(root, settings)
    with dataset_lock(settings.datasets_dir, path.name), writing_into(settings.datasets_dir):
        yield path


def write_made_marker(root: Path, origin: str) -> None:
    """Mark ``root`` complete and PawLab's own (the last step of making or importing it)."""
    marker = {"source": MADE_SOURCE, "origin": origin, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(root / COMPLETE_MARKER, json.dumps(marker) + "\n")


def class_folders(root: Path) -> list[Path]:
    return sorted(
        entry
        for entry in root.iterdir()
        if entry.is_dir() and not is_junk_name(entry.name) and entry.name.lower() not in UNLABELED_FOLDERS
    )


def _class_folder(root: Path, name: str) -> Path:
    folder = root / name
    if name not in {entry.name for entry in class_folders(root)}:
        raise DatasetError(f"{root.name!r} has no class {name!r}.")
    return folder


# --- Making a dataset and its classes --------------------------------------------


def new_dataset(name: str, classes: Iterable[str], settings: Settings | None = None) -> Path:
    """An empty dataset ``name`` with these classes; FileExistsError if the name is taken."""
    settings = settings or get_settings()
    name = safe_dataset_name(name)
    class_names = _check_class_names(classes)
    target = settings.datasets_dir / name
    with dataset_lock(settings.datasets_dir, name), writing_into(settings.datasets_dir):
        if target.exists():
            raise FileExistsError(f"A dataset named {name!r} already exists. Choose another name.")
        work = Path(tempfile.mkdtemp(prefix=f".{name}{IMPORT_INFIX}", dir=settings.datasets_dir))
        try:
            for class_name in class_names:
                (work / class_name).mkdir()
            (work / UNLABELED_FOLDER).mkdir()
            write_made_marker(work, "new")
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target.resolve()


def add_class(root: str | os.PathLike, name: str, settings: Settings | None = None) -> str:
    with _changing(root, settings) as path:
        existing = [folder.name for folder in class_folders(path)]
        (new_name,) = _check_class_names([*existing, name])[-1:]
        (path / new_name).mkdir()
    return new_name


def rename_class(root: str | os.PathLike, old: str, new: str, settings: Settings | None = None) -> str:
    with _changing(root, settings) as path:
        folder = _class_folder(path, old)
        others = [entry.name for entry in class_folders(path) if entry.name != old]
        (new_name,) = _check_class_names([*others, new])[-1:]
        os.rename(folder, path / new_name)
    return new_name


def remove_class(root: str | os.PathLike, name: str, settings: Settings | None = None) -> list[str]:
    """Remove a class; its photos move to unlabeled/ (nothing is lost). Returns where they went."""
    with _changing(root, settings) as path:
        folder = _class_folder(path, name)
        unlabeled = path / UNLABELED_FOLDER
        unlabeled.mkdir(exist_ok=True)
        moved = []
        for photo in sorted(folder.iterdir()):
            if photo.is_file():
                os.replace(photo, free_name(unlabeled, photo.name))
                moved.append(f"{UNLABELED_FOLDER}/{photo.name}")
        shutil.rmtree(folder)
    return moved


# --- Photos -------------------------------------------------------------------------


def _photo_path(root: Path, relative: str) -> Path:
    """A photo of the dataset named by the browser or the command line, checked to be inside it."""
    parts = Path(relative).parts
    if len(parts) != 2 or ".." in parts or Path(relative).is_absolute():
        raise DatasetError(f"{relative!r} is not a photo of this dataset (expected CLASS/FILE).")
    path = root / parts[0] / parts[1]
    if not path.is_file() or path.parent.parent != root:
        raise DatasetError(f"{root.name!r} has no photo {relative!r}.")
    return path


def move_photo(root: str | os.PathLike, relative: str, class_name: str, settings: Settings | None = None) -> str:
    """Move one photo into ``class_name``'s folder (labelling it); returns its new relative path."""
    with _changing(root, settings) as path:
        photo = _photo_path(path, relative)
        folder = _class_folder(path, class_name)
        if photo.parent == folder:
            return relative
        target = free_name(folder, photo.name)
        os.replace(photo, target)
    return f"{class_name}/{target.name}"


def remove_photo(root: str | os.PathLike, relative: str, settings: Settings | None = None) -> None:
    with _changing(root, settings) as path:
        _photo_path(path, relative).unlink()


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name`` with a number added when another photo has it."""
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while target.exists():
        target = folder / f"{stem}-{number}{suffix}"
        number += 1
    return target


def content_index(root: Path) -> dict[str, str]:
    """{first KEY_CHARS hex digits of sha256: relative path} of every photo in the dataset.

    Photos PawLab stored carry their key in their name; others (an import's
    own names) are hashed.
    """
    index: dict[str, str] = {}
    for folder in [*class_folders(root), root / UNLABELED_FOLDER]:
        if not folder.is_dir():
            continue
        for photo in sorted(folder.iterdir()):
            if not photo.is_file() or not is_image_name(photo.name):
                continue
            keyed = _KEYED_NAME.search(photo.name)
            key = keyed.group(1) if keyed else file_sha256(photo)[:KEY_CHARS]
            index.setdefault(key, f"{folder.name}/{photo.name}")
    return index


def _drop_problem(photos: list[tuple[str, bytes]], datasets_dir: Path, settings: Settings) -> str | None:
    """The sentence that refuses a whole drop over the quotas, or None."""
    total = sum(len(data) for _, data in photos)
    if len(photos) > settings.max_drop_photos:
        return f"That is {len(photos)} photos; PawLab adds at most {settings.max_drop_photos} at a time."
    if total > settings.max_drop_bytes:
        return f"Those photos take {format_size(total)}; PawLab adds at most {format_size(settings.max_drop_bytes)} at a time."
    if bytes_in_datasets(datasets_dir) + total > settings.max_datasets_bytes:
        return (
            f"The datasets together may take {format_size(settings.max_datasets_bytes)}, and these "
            f"{format_size(total)} would pass it. Remove a dataset you no longer need first."
        )
    return None


def _format_suffix(data: bytes) -> str | None:
    """The suffix for what Pillow finds inside ``data`` (not what its name says), or None."""
    try:
        image_format = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return SUFFIX_OF_FORMAT.get(image_format or "")


def _stem(upload_name: str) -> str:
    allowed = set(string.ascii_letters + string.digits + "-_")
    stem = "".join(c if c in allowed else "_" for c in Path(upload_name).stem)[:MAX_STEM_CHARS].strip("_")
    return stem or "photo"


def add_photos(
    root: str | os.PathLike,
    class_name: str | None,
    photos: Iterable[tuple[str, bytes]],
    settings: Settings | None = None,
) -> AddReport:
    """Store ``(name, bytes)`` photos in ``class_name`` (None: unlabelled), each decoded first.

    A drop over the quotas (settings.max_drop_photos, max_drop_bytes, the
    datasets' total) is refused whole with a sentence (DatasetError); within
    it, an unreadable photo or one already in the dataset is skipped with
    the reason, and the others are stored.
    """
    settings = settings or get_settings()
    photos = list(photos)
    report = AddReport()
    with _changing(root, settings) as path:
        problem = _drop_problem(photos, settings.datasets_dir, settings)
        if problem:
            raise DatasetError(problem)
        folder = _class_folder(path, class_name) if class_name is not None else path / UNLABELED_FOLDER
        folder.mkdir(exist_ok=True)
        index = content_index(path)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}{IMPORT_INFIX}", dir=settings.datasets_dir))
        try:
            for upload_name, data in photos:
                _add_one(upload_name, data, folder, index, work, report)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _add_one(upload_name: str, data: bytes, folder: Path, index: dict[str, str], work: Path, report: AddReport):
    shown = Path(str(upload_name)).name or "photo"
    key = hashlib.sha256(data).hexdigest()[:KEY_CHARS]
    if key in index:
        report.skipped.append(Skipped(shown, f"it is already in the dataset, as {index[key]}"))
        return
    suffix = _format_suffix(data)
    # Staged under its own suffix when Pillow cannot tell the format, so the check says why.
    staged = work / f"{_stem(shown)}_{key}{suffix or Path(shown).suffix.lower()}"
    staged.write_bytes(data)
    problem = check_image(staged) or (None if suffix else NOT_A_PHOTO)
    if problem:
        report.skipped.append(Skipped(shown, problem))
        return
    target = free_name(folder, staged.name)
    os.replace(staged, target)
    relative = f"{folder.name}/{target.name}"
    index[key] = relative
    report.added.append(relative)
