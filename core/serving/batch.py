"""Classifying many photos at once: a zip (or a server folder) in, a table and a sorted zip out.

    photos = photos_in_zip(uploaded_zip, work_dir)        # extracted with the archive checks
    predictions = classify_many(predictor, photos, progress=bar.progress)
    sorted_zip(predictions, photos, target)               # one folder per answer

A zip from a visitor is first weighed from its central directory alone: more
photos (or files) than PAWLAB_MAX_BATCH_PHOTOS, or more disk than
PAWLAB_MAX_DROP_BYTES counted in whole disk blocks (a 70-byte PNG takes 4 KB
and an inode), is refused before a byte is written. Then it goes through the
same extraction as a dataset upload (core.data.archive: size, entry count,
ratio, path checks), and only files with a photo suffix are classified, in
batches, so a progress bar moves and memory stays flat. A large batch is
classified by a ``BatchJob``: a thread the page polls for progress, and can
cancel between batches. The sorted zip has a folder per class inside "answered/",
beside "not sure/", "none of these/" and "unreadable/" (files that are not
photos): any name can be a class, "unsure" or "unreadable" too, so classes sit
one level down, where no abstention or error folder can meet them.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from core.config import Settings, get_settings
from core.data.archive import ArchiveError, ZipMember, safe_extract_zip, zip_contents
from core.data.download import format_size
from core.data.layout import is_image_name, is_junk
from core.runs.trust import Abstain
from core.serving.inference import Prediction, Predictor

BATCH = 32  # photos per model call: the progress bar moves every batch
ANSWERED_FOLDER = "answered"  # answered/<class>/
ABSTAINED_FOLDERS = {Abstain.UNSURE: "not sure", Abstain.UNKNOWN: "none of these"}
UNREADABLE_FOLDER = "unreadable"
# A file takes whole blocks on disk, and a folder at least one: what a batch writes is
# counted in these, not in the bytes the zip declares.
DISK_BLOCK = 4096


@dataclass(frozen=True)
class Photo:
    name: str  # as shown and as stored in the sorted zip: the path inside the zip
    path: Path


class BatchRefused(ArchiveError):
    """A zip or folder over the batch caps; the message is one sentence for a person."""


@dataclass(frozen=True)
class UnpackCost:
    """What extracting a zip would write, from its central directory."""

    files: int  # photos and other files: each is an inode and at least one block
    photos: int
    folders: int  # the extraction folder and every folder inside it
    disk_bytes: int  # whole blocks


def unpack_cost(members: Sequence[ZipMember]) -> UnpackCost:
    files = [member for member in members if not member.is_dir]
    folders = {member.parts[:depth] for member in members for depth in range(1, len(member.parts) + member.is_dir)}
    blocks = sum(-(-member.size // DISK_BLOCK) or 1 for member in files) + len(folders) + 1
    photos = sum(is_image_name(member.parts[-1]) for member in files)
    return UnpackCost(len(files), photos, len(folders) + 1, blocks * DISK_BLOCK)


def refuse_over_caps(label: str, cost: UnpackCost, settings: Settings) -> None:
    """Raise BatchRefused, in one sentence, when a zip would unpack more than a batch may."""
    most = settings.max_batch_photos
    if cost.photos > most:
        raise BatchRefused(f"{label} holds {cost.photos:,} photos; PawLab classifies at most {most:,} at a time.")
    if cost.files > most:
        raise BatchRefused(f"{label} holds {cost.files:,} files; PawLab unpacks at most {most:,} from one zip.")
    if cost.disk_bytes > settings.max_drop_bytes:
        raise BatchRefused(
            f"{label} would take {format_size(cost.disk_bytes)} on disk once unpacked "
            f"({cost.files:,} files in {cost.folders:,} folders), more than the "
            f"{format_size(settings.max_drop_bytes)} a batch may use."
        )


def photos_in_zip(source, work_dir: str | os.PathLike) -> list[Photo]:
    """Extract a visitor's zip into ``work_dir`` (a new folder) and list its photos by name.

    Refused from the zip's headers, before anything is written, when it is over the batch caps.
    """
    settings = get_settings()
    contents = zip_contents(source, max_bytes=settings.max_drop_bytes, max_members=settings.max_zip_entries)
    cost = unpack_cost(contents.members)
    refuse_over_caps(contents.label, cost, settings)
    # zipfile writes no more of an entry than its header declares, so what was counted bounds
    # what extraction writes; extraction still counts the raw bytes that come out.
    root = safe_extract_zip(
        source,
        Path(work_dir),
        max_bytes=settings.max_drop_bytes,
        max_members=settings.max_zip_entries,
        max_ratio=settings.max_compression_ratio,
    )
    return photos_in_folder(root)


def photos_in_folder(root: str | os.PathLike) -> list[Photo]:
    """The photos under ``root`` (junk and hidden files left out), sorted by name; more than
    PAWLAB_MAX_BATCH_PHOTOS is refused as soon as the walk finds one too many."""
    root = Path(root)
    most = get_settings().max_batch_photos
    found: list[Path] = []
    for path in _photo_paths(root):
        if len(found) == most:
            raise BatchRefused(
                f"The folder {str(root)!r} holds more than {most:,} photos; PawLab classifies at most {most:,} at a time."
            )
        found.append(path)
    return [Photo(path.relative_to(root).as_posix(), path) for path in sorted(found)]


def _photo_paths(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and is_image_name(path.name) and not is_junk(str(path.relative_to(root))):
            yield path


class BatchCancelled(Exception):
    """Classifying stopped between two batches because it was asked to."""


def classify_many(
    predictor: Predictor,
    photos: Sequence[Photo],
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    **thresholds,
) -> list[Prediction]:
    """Predictions for ``photos`` in order, a batch at a time; ``thresholds`` as Predictor.predict.

    ``stop`` set: BatchCancelled before the next batch.
    """
    predictions: list[Prediction] = []
    for start in range(0, len(photos), BATCH):
        if stop is not None and stop.is_set():
            raise BatchCancelled(f"Cancelled after {start:,} of {len(photos):,} photos.")
        batch = photos[start : start + BATCH]
        results = predictor.predict([(photo.name, photo.path.read_bytes()) for photo in batch], **thresholds)
        for result, photo in zip(results, batch):
            result.file = photo.name  # the path inside the zip: two folders may share a file name
            result.pixels = None  # the table and the zip do not need them; memory stays flat
        predictions += results
        if progress is not None:
            progress(len(predictions), len(photos))
    return predictions


class JobState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class BatchJob:
    """classify_many in a thread of its own, so a large batch does not hold the page's script thread.

    The page polls ``done`` of ``total`` and ``state``; ``cancel()`` stops it
    between two batches. Once DONE, ``predictions`` holds every answer in order.
    """

    def __init__(self, predictor: Predictor, photos: Sequence[Photo], **thresholds):
        self.total = len(photos)
        self.done = 0
        self.state = JobState.RUNNING
        self.predictions: list[Prediction] = []
        self.error: Exception | None = None  # why it FAILED
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(predictor, list(photos), thresholds), name="pawlab-batch", daemon=True
        )

    @classmethod
    def start(cls, predictor: Predictor, photos: Sequence[Photo], **thresholds) -> BatchJob:
        job = cls(predictor, photos, **thresholds)
        job._thread.start()
        return job

    @property
    def running(self) -> bool:
        return self.state == JobState.RUNNING

    @property
    def cancelling(self) -> bool:
        return self.running and self._stop.is_set()

    def cancel(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> JobState:
        self._thread.join(timeout)
        return self.state

    def _run(self, predictor: Predictor, photos: list[Photo], thresholds: dict) -> None:
        try:
            predictions = classify_many(predictor, photos, progress=self._progress, stop=self._stop, **thresholds)
        except BatchCancelled:
            self.state = JobState.CANCELLED
        except Exception as error:  # shown by the page in a sentence; the thread must not die silently
            self.error, self.state = error, JobState.FAILED
        else:
            self.predictions = predictions  # before the state: a reader that sees DONE sees them
            self.state = JobState.DONE

    def _progress(self, done: int, total: int) -> None:
        self.done = done


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
