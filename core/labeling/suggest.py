"""Which unlabelled photo to show next, with which class, and recording the answers.

Each call reads the dataset as it is now (every photo labelled so far, the
corrections included), refits the suggester on their frozen embeddings
(cached by content, so a round costs no forward pass) and ranks the photos
still unlabelled::

    batch = suggest_next(root, 50)
    for suggestion in batch:
        suggestion.file, suggestion.suggested, suggestion.confidence, suggestion.unknown
    report = record_labels(root, {"unlabeled/a1b2.jpg": "cats", "unlabeled/c3d4.jpg": None})

A dataset made in PawLab (core.data.maker) gets its photos moved into their
class folders; any other dataset is never changed, its labels are
corrections (core.data.corrections). "Not any of these" (None) is always an
exclusion correction: the photo stays where it is and is never offered again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.config import get_settings
from core.data.corrections import add_correction, apply_corrections, load_corrections
from core.data.dataset import DatasetError, scan_dataset
from core.data.layout import is_image_name, is_junk_name
from core.data.maker import UNLABELED_FOLDER, class_folders, is_editable, move_photo
from core.labeling.matrix import dataset_embeddings
from core.labeling.ranking import rank_for_labelling
from core.models.embeddings import content_key


@dataclass(frozen=True)
class Suggestion:
    """One unlabelled photo as offered to a person."""

    file: str  # relative to the dataset root, "/"-separated
    suggested: str | None  # the class the model would give it; None before any photo is labelled
    confidence: float  # the model's probability of ``suggested``, 0-1
    probabilities: dict[str, float]  # class -> probability
    unknown: bool  # looks like none of the classes: offer "not any of these" (exclude)
    reason: str  # one sentence for a person: why this photo, and what to check

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LabelPool:
    """A dataset seen for labelling: what is labelled (with corrections) and what is left."""

    root: Path
    classes: list[str]
    labelled: list[tuple[str, int]]  # (absolute path, class index)
    unlabelled: list[str]  # absolute paths, never labelled nor excluded
    excluded: int  # unlabelled photos a person said are none of the classes
    content_keys: dict[str, str] = field(default_factory=dict)  # absolute path -> sha256

    def relative(self, path: str) -> str:
        return Path(path).relative_to(self.root).as_posix()


@dataclass
class LabelReport:
    """What record_labels did: photos moved (a made dataset) and corrections recorded."""

    moved: dict[str, str] = field(default_factory=dict)  # old relative path -> new one
    corrections: dict[str, str | None] = field(default_factory=dict)  # file -> class; None: excluded

    def to_dict(self) -> dict:
        labels = [*self.moved.values(), *(label for label in self.corrections.values() if label is not None)]
        return {
            "labelled": len(labels),
            "excluded": sum(label is None for label in self.corrections.values()),
            "moved": self.moved,
            "corrections": self.corrections,
        }


# --- The dataset as the labeller sees it -------------------------------------------


def read_pool(root: str | os.PathLike) -> LabelPool:
    """Scan ``root`` (cached) and split its photos into labelled and still to label."""
    info = scan_dataset(root)
    mapping = load_corrections(info.root).mapping
    corrected = apply_corrections(info, mapping)
    class_index = {name: index for index, name in enumerate(info.classes)}
    labelled = {sample.path: sample.label for samples in corrected.splits.values() for sample in samples}
    unlabelled, excluded = [], 0
    for path in info.unlabeled:
        relative = Path(path).relative_to(info.root).as_posix()
        if relative not in mapping:
            unlabelled.append(path)
        elif mapping[relative] is None:
            excluded += 1
        elif mapping[relative] in class_index:  # labelled by a correction (a dataset PawLab did not make)
            labelled.setdefault(path, class_index[str(mapping[relative])])
        else:
            unlabelled.append(path)  # its class was renamed or removed since
    return LabelPool(Path(info.root), info.classes, list(labelled.items()), unlabelled, excluded, info.content_keys)


def _embeddings(pool: LabelPool, paths: list[str]) -> np.ndarray:
    keys = [pool.content_keys.get(path) or content_key(path) for path in paths]
    return dataset_embeddings(pool.root, paths, keys)


# --- Suggestions --------------------------------------------------------------------


def suggest_next(root: str | os.PathLike, count: int) -> list[Suggestion]:
    """Up to ``count`` unlabelled photos in the order a person should label them; [] when none are left."""
    if count < 1:
        raise DatasetError(f"Ask for at least 1 photo, not {count}.")
    pool = read_pool(root)
    if not pool.unlabelled:
        return []
    if not pool.classes:
        raise DatasetError(f"{pool.root.name!r} has no classes yet: add one before labelling its photos.")
    labelled_paths = [path for path, _ in pool.labelled]
    embeddings = _embeddings(pool, labelled_paths + pool.unlabelled)
    labels = np.array([label for _, label in pool.labelled], dtype=int)
    ranked = rank_for_labelling(embeddings[: len(labels)], labels, embeddings[len(labels) :], len(pool.classes))
    return [
        Suggestion(
            file=pool.relative(pool.unlabelled[offer.index]),
            suggested=pool.classes[offer.suggested] if offer.suggested is not None else None,
            confidence=round(offer.confidence, 4),
            probabilities={name: round(float(p), 4) for name, p in zip(pool.classes, offer.probabilities)},
            unknown=offer.unknown,
            reason=offer.reason,
        )
        for offer in ranked[:count]
    ]


# --- Recording labels ------------------------------------------------------------------


def _relative_path(root: Path, file: str) -> str:
    """``file`` as a "/"-separated path inside ``root``, refusing one that climbs out of it."""
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            raise DatasetError(f"{file!r} is not a photo of {root.name!r}.") from None
    relative = PurePosixPath(path.as_posix())
    if not relative.parts or ".." in relative.parts or relative.is_absolute():
        raise DatasetError(f"{file!r} is not a photo of {root.name!r} (give its path inside the dataset).")
    return str(relative)


@dataclass
class _Photos:
    """What labels are checked against: the dataset's classes, and whether a path is one of its photos."""

    root: Path
    classes: list[str]
    files: set[str] | None  # every photo's relative path; None: a made dataset, checked on disk

    def has(self, relative: str) -> bool:
        if self.files is not None:
            return relative in self.files
        # A made dataset holds CLASS/FILE and unlabeled/FILE only: no scan needed to know.
        parts = PurePosixPath(relative).parts
        return (
            len(parts) == 2
            and (parts[0] == UNLABELED_FOLDER or parts[0] in self.classes)
            and is_image_name(parts[1])
            and not is_junk_name(parts[1])
            and (self.root / relative).is_file()
        )


def _photos(root: str | os.PathLike) -> _Photos:
    path = Path(root).expanduser().resolve()
    if is_editable(path) and path.parent == get_settings().datasets_dir.resolve():  # as maker.move_photo asks
        return _Photos(path, [folder.name for folder in class_folders(path)], None)
    pool = read_pool(path)
    files = {pool.relative(photo) for photo in pool.unlabelled} | {pool.relative(photo) for photo, _ in pool.labelled}
    return _Photos(pool.root, pool.classes, files)


def check_labels(root: str | os.PathLike, labels: Mapping[str, str | None]) -> tuple[_Photos, dict[str, str | None]]:
    """The labels with each file made relative, or DatasetError on the first that cannot be recorded."""
    photos = _photos(root)
    checked: dict[str, str | None] = {}
    for file, label in labels.items():
        relative = _relative_path(photos.root, file)
        if not photos.has(relative):
            raise DatasetError(f"{photos.root.name!r} has no photo {relative!r} to label.")
        if label is not None and label not in photos.classes:
            classes = ", ".join(photos.classes) or "none yet"
            raise DatasetError(f"{photos.root.name!r} has no class {label!r} (its classes: {classes}).")
        checked[relative] = label
    return photos, checked


def record_labels(root: str | os.PathLike, labels: Mapping[str, str | None], author: str = "") -> LabelReport:
    """Give each photo its class (None: none of them, exclude it). All are checked before any is recorded.

    A made dataset's photos move into their class folder; any other dataset
    gets corrections. ``author``: the session, for the corrections' Undo.
    """
    photos, checked = check_labels(root, labels)
    report = LabelReport()
    editable = photos.files is None
    for relative, label in checked.items():
        if label is not None and editable:
            report.moved[relative] = move_photo(photos.root, relative, label)
        else:
            add_correction(photos.root, relative, label, classes=photos.classes, author=author)
            report.corrections[relative] = label
    return report
