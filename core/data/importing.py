"""Importing photos with their labels: a zip or folder, plus a labels file, as a dataset.

    summary = import_labelled("kaggle.zip", "breeds")              # labels.csv found at its root
    summary = import_labelled("photos/", "breeds", labels="y.csv",
                              columns=LabelColumns("id", "breed"))
    summary.to_dict()   # dataset, classes, counts, unlabeled, rows_without_file, files_without_row, skipped

The photos are copied into ``PAWLAB_HOME/datasets/NAME/<class>/`` under their
own names (so the ids of the CSV still name them), photos without a usable
row into ``unlabeled/``; every photo is decoded first and an unreadable one
is skipped with the reason. The dataset is PawLab's own (core.data.maker):
labelling its unlabelled photos later moves them into their class. Without
a labels file, a source of class folders is imported as it is (as the
Dataset page's zip upload always did, read-only); loose photos become one
dataset of unlabelled photos.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from core.config import Settings, get_settings
from core.data.acquire import (
    COMPLETE_MARKER,
    IMPORT_INFIX,
    bytes_in_datasets,
    dataset_lock,
    require_images,
    safe_dataset_name,
    writing_into,
)
from core.data.archive import ZipSource, safe_extract_zip, zip_contents
from core.data.dataset import DatasetError, find_dataset_root, scan_dataset
from core.data.download import format_size
from core.data.images import check_image
from core.data.label_file import LABEL_FILE_NAMES, MAX_CSV_BYTES, LabelColumns, LabelPlan, plan_labels
from core.data.layout import is_image_name, is_junk
from core.data.maker import UNLABELED_FOLDER, Skipped, free_name, write_made_marker
from core.fileio import atomic_write

ImportProgress = Callable[[int, int], None]  # (photos copied, photos in all)


@dataclass
class ImportSummary:
    dataset: str  # the dataset folder
    classes: list[str]
    counts: dict[str, int]
    unlabeled: int
    rows_without_file: int = 0
    files_without_row: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    columns: LabelColumns | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["skipped"] = [asdict(entry) for entry in self.skipped]
        return record


def photos_in(folder: Path) -> list[str]:
    """Every photo-named, non-junk file below ``folder``, ``/``-separated and relative, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        relative_dir = Path(dirpath).relative_to(folder)
        for name in sorted(filenames):
            relative = (relative_dir / name).as_posix()
            if is_image_name(name) and not is_junk(relative):
                found.append(relative)
    return found


def find_label_file(folder: Path) -> Path | None:
    """labels.csv or metadata.csv at the root of ``folder`` (after unwrapping one wrapper folder)."""
    for base in dict.fromkeys([folder, find_dataset_root(folder)]):
        for name in LABEL_FILE_NAMES:
            if (base / name).is_file():
                return base / name
    return None


def read_label_text(path: Path) -> str:
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DatasetError(f"The labels file {path.name} is larger than {format_size(MAX_CSV_BYTES)}.")
    return decode_text(path.read_bytes())


def preview_labels(folder: Path, labels: Path | None = None, columns: LabelColumns | None = None) -> LabelPlan:
    """The plan an import of ``folder`` would follow, without copying anything."""
    label_file = labels or find_label_file(folder)
    if label_file is None:
        raise DatasetError(f"No labels file given, and no {' or '.join(LABEL_FILE_NAMES)} in {folder.name}.")
    return plan_labels(photos_in(folder), read_label_text(label_file), columns)


def preview_zip(source: ZipSource, csv_text: str | None, columns: LabelColumns | None = None) -> LabelPlan:
    """The plan an import of the zip ``source`` would follow, from its headers alone (nothing extracted).

    ``csv_text``: the labels file uploaded beside the zip; None reads labels.csv
    or metadata.csv from the zip (at its root or in its one wrapper folder).
    """
    settings = get_settings()
    contents = zip_contents(source, max_bytes=settings.max_extract_bytes, max_members=settings.max_zip_entries)
    files = {"/".join(member.parts): member for member in contents.members if not member.is_dir}
    photos = sorted(name for name in files if is_image_name(name) and not is_junk(name))
    if csv_text is None:
        found = [
            name for name in files if PurePosixPath(name).name.lower() in LABEL_FILE_NAMES and name.count("/") <= 1
        ]
        if not found:
            raise DatasetError(
                f"{contents.label} holds no {' or '.join(LABEL_FILE_NAMES)}; upload the labels file too."
            )
        member = min(
            found, key=lambda name: (name.count("/"), LABEL_FILE_NAMES.index(PurePosixPath(name).name.lower()))
        )
        if files[member].size > MAX_CSV_BYTES:
            raise DatasetError(f"The labels file {member} is larger than {format_size(MAX_CSV_BYTES)}.")
        with zipfile.ZipFile(source if isinstance(source, (str, os.PathLike)) else _rewound(source)) as archive:
            csv_text = decode_text(archive.read(member))
    return plan_labels(photos, csv_text, columns)


def _rewound(file):
    file.seek(0)
    return file


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # Excel's default on Windows


def _copy_photos(plan: LabelPlan, source: Path, work: Path, progress: ImportProgress | None) -> list[Skipped]:
    """Decode and copy each photo to its class folder (or unlabeled/); the unreadable are skipped."""
    skipped = []
    placed = [(photo, plan.labels.get(photo, UNLABELED_FOLDER)) for photo in [*plan.labels, *plan.unlabeled]]
    for done, (photo, folder_name) in enumerate(placed, 1):
        problem = check_image(source / photo)
        if problem:
            skipped.append(Skipped(photo, problem))
            continue
        folder = work / folder_name
        folder.mkdir(exist_ok=True)
        target = free_name(folder, Path(photo).name)  # the same name in two source folders
        shutil.copyfile(source / photo, target)
        if progress is not None:
            progress(done, len(placed))
    return skipped


def _class_totals(info) -> dict[str, int]:
    totals = dict.fromkeys(info.classes, 0)
    for per_class in info.counts().values():
        for class_name, count in per_class.items():
            totals[class_name] += count
    return totals


def _build(
    source: Path, target: Path, plan: LabelPlan, settings: Settings, progress: ImportProgress | None
) -> ImportSummary:
    """Copy the plan's photos into a work folder, mark it PawLab's own, rename it into place."""
    needed = sum((source / photo).stat().st_size for photo in [*plan.labels, *plan.unlabeled])
    if bytes_in_datasets(settings.datasets_dir) + needed > settings.max_datasets_bytes:
        raise DatasetError(
            f"The datasets together may take {format_size(settings.max_datasets_bytes)}; "
            f"these photos ({format_size(needed)}) would pass it."
        )
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}{IMPORT_INFIX}build-", dir=settings.datasets_dir))
    try:
        skipped = _copy_photos(plan, source, work, progress)
        (work / UNLABELED_FOLDER).mkdir(exist_ok=True)
        write_made_marker(work, f"import:{source.name}")
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = scan_dataset(target)
    return ImportSummary(
        dataset=str(target),
        classes=info.classes,
        counts=_class_totals(info),
        unlabeled=len(info.unlabeled),
        rows_without_file=plan.rows_without_file,
        files_without_row=plan.files_without_row,
        skipped=skipped,
        columns=plan.columns,
        notes=plan.notes(),
    )


def _install_as_is(folder: Path, target: Path, copy: bool, origin: str) -> ImportSummary:
    """Class folders without a labels file: the dataset as it is, read-only, as uploads always were."""
    root = find_dataset_root(folder)
    if copy:
        copied = folder.parent / f"{folder.name}.copy"
        shutil.copytree(root, copied)
        root = copied
    atomic_write(root / COMPLETE_MARKER, json.dumps({"source": origin}) + "\n")
    os.replace(root, target)
    info = scan_dataset(target)
    skipped = [Skipped(file, reason) for file, reason in info.skipped]
    return ImportSummary(str(target), info.classes, _class_totals(info), len(info.unlabeled), skipped=skipped)


def _has_class_folders(folder: Path) -> bool:
    try:
        require_images(find_dataset_root(folder), folder.name)
    except DatasetError:
        return False
    return True


def _extract(source: ZipSource, scratch: Path, settings: Settings) -> Path:
    return safe_extract_zip(
        source,
        scratch / "extracted",
        max_bytes=settings.max_extract_bytes,
        max_members=settings.max_zip_entries,
        max_ratio=settings.max_compression_ratio,
        room=settings.max_datasets_bytes - bytes_in_datasets(settings.datasets_dir),
    )


def import_labelled(
    source: ZipSource,
    name: str,
    labels: str | os.PathLike | None = None,
    columns: LabelColumns | None = None,
    settings: Settings | None = None,
    progress: ImportProgress | None = None,
) -> ImportSummary:
    """Import ``source`` (a zip: path or uploaded file; or a folder) as the dataset ``name``;
    see the module docstring. ``columns`` None: guessed."""
    settings = settings or get_settings()
    name = safe_dataset_name(name)
    target = settings.datasets_dir / name
    label_path = Path(labels) if labels else None
    if label_path is not None and not label_path.is_file():
        raise DatasetError(f"There is no labels file at {label_path}.")
    is_folder = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
    if isinstance(source, (str, os.PathLike)) and not Path(source).exists():
        raise DatasetError(f"There is no zip or folder at {source}.")
    source_name = Path(getattr(source, "name", None) or str(source)).name
    with dataset_lock(settings.datasets_dir, name), writing_into(settings.datasets_dir):
        if target.exists():
            raise FileExistsError(f"A dataset named {name!r} already exists. Choose another name.")
        with tempfile.TemporaryDirectory(prefix=f".{name}{IMPORT_INFIX}", dir=settings.datasets_dir) as scratch:
            folder = Path(source) if is_folder else _extract(source, Path(scratch), settings)  # type: ignore[arg-type]
            label_file = label_path or find_label_file(folder)
            if label_file is None and _has_class_folders(folder):
                return _install_as_is(folder, target, copy=is_folder, origin=f"upload:{source_name}")
            if label_file is None:
                plan = LabelPlan(LabelColumns("", ""), [], unlabeled=photos_in(folder))
            else:
                plan = plan_labels(photos_in(folder), read_label_text(label_file), columns)
            if not plan.labels and not plan.unlabeled:
                raise DatasetError(f"{source_name} holds no photos (JPEG, PNG, GIF, BMP or WebP).")
            return _build(folder, target, plan, settings, progress)
