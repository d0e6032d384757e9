"""Getting a photo dataset onto this machine: download, upload or local folder.

Every dataset PawLab manages is a folder ``<datasets_dir>/<name>`` that is
itself the dataset root: it holds ``train/`` (and maybe ``validation/``) or one
folder of images per class. A zip is extracted into a hidden work folder, a
single wrapper folder is unwrapped, a ``.complete`` marker is written, and only
then is the root renamed into place. So a folder under ``datasets_dir`` is
either a whole dataset or nothing, and a failed attempt can simply be repeated.

Each attempt holds the dataset's lock (``.<name>.lock``) while it works, so a
work folder whose lock nobody holds belongs to a process that died (a SIGKILL
leaves hundreds of MB); ``sweep_abandoned_imports()``, called once per process
by the app and the CLI, removes those. Imports together may take at most
``PAWLAB_MAX_DATASETS_BYTES``, and a folder that cannot be written is one
sentence: "PawLab cannot write to /path (read-only file system)."

Typical use (the Dataset page and the CLI)::

    sweep_abandoned_imports()  # once, at start
    root = fetch_official_dataset(progress=lambda stage, done, total: ...)
    root = import_zip(uploaded_file, "my pets")
    root = use_local_folder("/srv/photos/pets")  # only with PAWLAB_ALLOW_LOCAL_PATHS=1
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.config import Settings, get_settings
from core.data.archive import ArchiveError, safe_extract_zip
from core.data.dataset import DatasetError, find_dataset_root
from core.data.download import DownloadError, download_file
from core.data.layout import is_image_name, is_junk_name
from core.fileio import CANNOT_WRITE, FileLock, LockTimeout, atomic_write, cannot_write_message

COMPLETE_MARKER = ".complete"
DOWNLOADS_DIR = "downloads"
# An attempt's work folder is ".<name>.import-<random>" next to its lock ".<name>.lock".
IMPORT_INFIX = ".import-"
# How long a second session waits for another one fetching or importing the
# same dataset (the official download takes well under a minute) before it
# is told to try again.
DATASET_LOCK_TIMEOUT_SECONDS = 5 * 60
# Dataset folder names are cut to this many characters.
MAX_NAME_CHARS = 64
# Photos count as a dataset at depth 2 (class/photo) to 4 (wrapper/split/class/photo).
MIN_PHOTO_DEPTH, MAX_PHOTO_DEPTH = 2, 4
# (stage "download" | "extract", done, total or None)
AcquireProgress = Callable[[str, int, int | None], None]

# What the Dataset page and the CLI catch to show a message instead of a traceback
# (DatasetError: a bad name, or a folder or zip without class folders of photos;
# OSError includes fileio.LockTimeout: another session kept the dataset busy).
ACQUIRE_ERRORS = (DownloadError, ArchiveError, DatasetError, OSError)


def fetch_official_dataset(
    settings: Settings | None = None,
    progress: AcquireProgress | None = None,
) -> Path:
    """Download and extract `settings.dataset_url`; return the dataset root.

    A dataset that is already complete is returned without network access.
    """
    settings = settings or get_settings()
    url = settings.dataset_url
    filename = _url_filename(url)
    name = safe_dataset_name(filename.removesuffix(".zip"))
    target = settings.datasets_dir / name
    if is_complete(target):
        return target

    with dataset_lock(settings.datasets_dir, name):
        if is_complete(target):  # another session finished it while we waited
            return target
        _remove_leftovers(settings.datasets_dir, name)
        zip_path = settings.datasets_dir / DOWNLOADS_DIR / filename
        try:
            download_file(url, zip_path, progress=_stage(progress, "download"))
            _install_zip(zip_path, target, settings, progress, origin=url)
        finally:
            # The extracted folder is what we keep; a bad zip must not be reused.
            zip_path.unlink(missing_ok=True)
    return target


def import_zip(
    source: str | os.PathLike | BinaryIO,
    name: str,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    progress: AcquireProgress | None = None,
) -> Path:
    """Extract an uploaded zip (path or file-like, e.g. Streamlit's UploadedFile)
    as the dataset `name`; return its root.

    An existing dataset of that name is kept (FileExistsError) unless
    `overwrite` is true, in which case it is replaced only after the new one
    extracted successfully.
    """
    settings = settings or get_settings()
    name = safe_dataset_name(name)
    target = settings.datasets_dir / name
    with dataset_lock(settings.datasets_dir, name):
        if is_complete(target) and not overwrite:
            raise FileExistsError(f"A dataset named {name!r} already exists. Choose another name, or replace it.")
        _remove_leftovers(settings.datasets_dir, name)
        label = getattr(source, "name", None) or (source if isinstance(source, (str, os.PathLike)) else "upload")
        _install_zip(source, target, settings, progress, origin=f"upload:{Path(label).name}")
    return target


def use_local_folder(path: str | os.PathLike, settings: Settings | None = None) -> Path:
    """Return the dataset root inside a folder on the server's own disk."""
    settings = settings or get_settings()
    if not settings.allow_local_paths:
        raise PermissionError(
            "Opening folders on the server's disk is switched off. The operator "
            "can allow it by starting PawLab with PAWLAB_ALLOW_LOCAL_PATHS=1."
        )
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"There is no folder at {folder}.")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder.")
    root = find_dataset_root(folder.resolve())
    require_images(root, f"The folder {folder}")
    return root


def list_local_datasets(settings: Settings | None = None) -> list[Path]:
    """Completed datasets under `settings.datasets_dir`, sorted by name."""
    settings = settings or get_settings()
    if not settings.datasets_dir.is_dir():
        return []
    return sorted(
        entry
        for entry in settings.datasets_dir.iterdir()
        if not entry.name.startswith(".") and entry.name != DOWNLOADS_DIR and is_complete(entry)
    )


def safe_dataset_name(name: str) -> str:
    """A folder name from what a person typed: "My pets!" -> "My_pets"."""
    cleaned = re.sub(r"[^\w.-]+", "_", str(name).strip()).strip("._-")[:MAX_NAME_CHARS]
    if not cleaned:
        raise DatasetError("Give the dataset a name with letters or digits, e.g. 'my_pets'.")
    if cleaned.lower() == DOWNLOADS_DIR:
        raise DatasetError(f"The name {cleaned!r} is reserved; choose another one.")
    return cleaned


def _install_zip(
    zip_source, target: Path, settings: Settings, progress: AcquireProgress | None, *, origin: str
) -> None:
    """Extract, unwrap, check and mark in a work folder; then rename into place."""
    datasets_dir = settings.datasets_dir
    with writing_into(datasets_dir):
        datasets_dir.mkdir(parents=True, exist_ok=True)
        room = settings.max_datasets_bytes - bytes_in_datasets(datasets_dir)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}{IMPORT_INFIX}", dir=datasets_dir))
    try:
        with writing_into(datasets_dir):
            extracted = safe_extract_zip(
                zip_source,
                work / "extracted",
                max_bytes=settings.max_extract_bytes,
                max_members=settings.max_zip_entries,
                max_ratio=settings.max_compression_ratio,
                room=room,
                progress=_stage(progress, "extract"),
            )
            root = find_dataset_root(extracted)
            require_images(root, "The archive")
            marker = {"source": origin, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            atomic_write(root / COMPLETE_MARKER, json.dumps(marker) + "\n")
            if target.exists():  # overwrite: move the old one aside, then swap
                os.replace(target, work / "previous")
            os.replace(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def writing_into(datasets_dir: Path):
    """A read-only or full disk becomes one sentence naming the datasets folder."""
    try:
        yield
    except OSError as error:
        if error.errno not in CANNOT_WRITE:
            raise
        raise DatasetError(cannot_write_message(datasets_dir, error)) from error


def bytes_in_datasets(datasets_dir: Path) -> int:
    """Bytes of every file under the datasets folder, but the downloads passing through."""
    total = 0
    for folder, subfolders, files in os.walk(datasets_dir):
        if Path(folder) == datasets_dir and DOWNLOADS_DIR in subfolders:
            subfolders.remove(DOWNLOADS_DIR)
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def sweep_abandoned_imports(settings: Settings | None = None) -> list[Path]:
    """Remove the work folders and partial downloads of attempts whose process died.

    An attempt holds its dataset's lock while it works; a leftover whose lock
    can be taken at once has no owner. Returns what was removed.
    """
    settings = settings or get_settings()
    datasets_dir = settings.datasets_dir
    if not datasets_dir.is_dir():
        return []
    leftovers = [(entry, entry.name[1:].split(IMPORT_INFIX)[0]) for entry in datasets_dir.glob(f".*{IMPORT_INFIX}*")]
    downloads = datasets_dir / DOWNLOADS_DIR
    if downloads.is_dir():
        leftovers += [(entry, _download_owner(entry.name)) for entry in downloads.iterdir()]
    removed = []
    for leftover, name in leftovers:
        with (
            contextlib.suppress(LockTimeout, DatasetError),
            FileLock(datasets_dir / f".{safe_dataset_name(name)}.lock", timeout=0),
        ):
            _remove(leftover)
            removed.append(leftover)
    return removed


def _download_owner(file_name: str) -> str:
    """The dataset whose fetch wrote ``.<file>.zip.<random>.part`` or ``<file>.zip``."""
    if file_name.startswith(".") and file_name.endswith(".part"):
        file_name = file_name[1:].removesuffix(".part").rsplit(".", 1)[0]
    return file_name.removesuffix(".zip")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _remove_leftovers(datasets_dir: Path, name: str) -> None:
    """Delete what an interrupted attempt left; call only while holding the lock."""
    target = datasets_dir / name
    if target.exists() and not is_complete(target):
        shutil.rmtree(target, ignore_errors=True)
    if datasets_dir.is_dir():
        for leftover in datasets_dir.glob(f".{name}{IMPORT_INFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def dataset_lock(datasets_dir: Path, name: str):
    """One session at a time fetches, imports or replaces the dataset ``name``."""
    lock = FileLock(datasets_dir / f".{name}.lock", timeout=DATASET_LOCK_TIMEOUT_SECONDS, what=f"the dataset {name!r}")
    with contextlib.ExitStack() as held:
        with writing_into(datasets_dir):  # the lock file is the first thing written
            datasets_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(lock)
        yield


def _stage(progress: AcquireProgress | None, stage: str):
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _url_filename(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    filename = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    filename = re.sub(r"[^\w.-]+", "_", filename).lstrip(".")
    return filename or "dataset.zip"


def _visible_entries(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(entry.path) for entry in entries if not is_junk_name(entry.name))


def _is_image(path: Path) -> bool:
    return is_image_name(path.name) and path.is_file()


def require_images(root: Path, what: str) -> None:
    """Refuse a folder with no images in class folders (depth 2 to 4)."""

    def has_images(folder: Path, depth: int) -> bool:
        for entry in _visible_entries(folder):
            if depth >= MIN_PHOTO_DEPTH and _is_image(entry):
                return True
            if depth < MAX_PHOTO_DEPTH and entry.is_dir() and has_images(entry, depth + 1):
                return True
        return False

    if not has_images(root, 1):
        raise DatasetError(
            f"{what} contains no photos in a layout PawLab understands: put the "
            "images in one folder per class (for example cats/ and dogs/), "
            "optionally inside train/ and validation/ folders."
        )
