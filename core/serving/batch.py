"""Classifying many photos at once: a zip (or a server folder) in, a table and a sorted zip out.

    photos = photos_in_zip(uploaded_zip, work_dir)        # extracted with the archive checks
    predictions = classify_many(predictor, photos, progress=bar.progress)
    sorted_zip(predictions, photos, target)               # one folder per answer

A zip from a visitor goes through the same extraction as a dataset upload
(core.data.archive: size, entry count, ratio, path checks), then only files
with a photo suffix are classified, in batches, so a progress bar moves and
memory stays flat. The sorted zip has a folder per class inside "answered/",
beside "not sure/", "none of these/" and "unreadable/" (files that are not
photos): any name can be a class, "unsure" or "unreadable" too, so classes sit
one level down, where no abstention or error folder can meet them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config import get_settings
from core.data.archive import safe_extract_zip
from core.data.layout import is_image_name, is_junk
from core.runs.trust import Abstain
from core.serving.inference import Prediction, Predictor

BATCH = 32  # photos per model call: the progress bar moves every batch
ANSWERED_FOLDER = "answered"  # answered/<class>/
ABSTAINED_FOLDERS = {Abstain.UNSURE: "not sure", Abstain.UNKNOWN: "none of these"}
UNREADABLE_FOLDER = "unreadable"


@dataclass(frozen=True)
class Photo:
    name: str  # as shown and as stored in the sorted zip: the path inside the zip
    path: Path


def photos_in_zip(source, work_dir: str | os.PathLike) -> list[Photo]:
    """Extract a visitor's zip into ``work_dir`` (a new folder) and list its photos by name."""
    settings = get_settings()
    root = safe_extract_zip(
        source,
        Path(work_dir),
        max_bytes=settings.max_drop_bytes,
        max_members=settings.max_zip_entries,
        max_ratio=settings.max_compression_ratio,
    )
    return photos_in_folder(root)


def photos_in_folder(root: str | os.PathLike) -> list[Photo]:
    """The photos under ``root`` (junk and hidden files left out), sorted by name."""
    root = Path(root)
    found = [
        path
        for path in root.rglob("*")
        if path.is_file() and is_image_name(path.name) and not is_junk(str(path.relative_to(root)))
    ]
    return [Photo(path.relative_to(root).as_posix(), path) for path in sorted(found)]


def classify_many(
    predictor: Predictor, photos: Sequence[Photo], progress: Callable[[int, int], None] | None = None, **thresholds
) -> list[Prediction]:
    """Predictions for ``photos`` in order, a batch at a time; ``thresholds`` as Predictor.predict."""
    predictions: list[Prediction] = []
    for start in range(0, len(photos), BATCH):
        batch = photos[start : start + BATCH]
        results = predictor.predict([(photo.name, photo.path.read_bytes()) for photo in batch], **thresholds)
        for result, photo in zip(results, batch):
            result.file = photo.name  # the path inside the zip: two folders may share a file name
            result.pixels = None  # the table and the zip do not need them; memory stays flat
        predictions += results
        if progress is not None:
            progress(len(predictions), len(photos))
    return predictions


def folder_for(prediction: Prediction) -> str:
    """Where the photo goes in the sorted zip; a class's folder is always under answered/."""
    if not prediction.ok:
        return UNREADABLE_FOLDER
    if prediction.abstained is not None:
        return ABSTAINED_FOLDERS[prediction.abstained]
    return f"{ANSWERED_FOLDER}/{prediction.label}"


def sorted_zip(predictions: Sequence[Prediction], photos: Sequence[Photo], target: str | os.PathLike) -> Path:
    """A zip with one folder per answer holding the photos that got it; written whole, then renamed."""
    target = Path(target)
    partial = target.with_name(f".{target.name}.partial")
    used: set[str] = set()
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for prediction, photo in zip(predictions, photos):
            name = f"{folder_for(prediction)}/{Path(photo.name).name}"
            while name in used:  # the same file name in two folders of the upload
                name = f"{folder_for(prediction)}/{len(used)}-{Path(photo.name).name}"
            used.add(name)
            archive.write(photo.path, name)
    os.replace(partial, target)
    return target
