"""The words a dataset folder is written in: split folders, junk, photo files.

Scanning, splitting, zip extraction and finding a dataset's root all have to
agree on what ``training/`` means, which files are an archiver's leftovers and
which suffixes are photos. They all ask this module, so a name added here is
understood everywhere at once::

    split_of("Testing")           # Split.TEST
    is_junk_name(".DS_Store")     # True: never data, never reported
    is_image_name("cat.JPG")      # True
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from pathlib import PurePosixPath


class Split(StrEnum):
    """The three sets a run uses. A StrEnum, so ``Split.TEST == "test"`` and JSON keeps the word."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


# The key of DatasetInfo.splits when a folder has no split folders: one pool
# of class folders that make_splits divides three ways.
POOL = "all"

# Folder names (lower-cased) people and public datasets use for each split.
SPLIT_ALIASES: dict[str, Split] = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "validation": Split.VALIDATION,
    "val": Split.VALIDATION,
    "valid": Split.VALIDATION,
    "test": Split.TEST,
    "testing": Split.TEST,
}

# Unicode categories that break a line or are invisible controls: Cc (C0, DEL,
# C1: newline, tab, NUL...), and the line and paragraph separators.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})

# Folders of photos nobody has labelled yet (the only two spellings people use).
# Shown and counted, offered for labelling, never trained on.
UNLABELED_FOLDERS = frozenset({"unlabeled", "unlabelled"})

# Files and folders that macOS, Windows and archivers add and nobody means as
# data. Hidden dot-files (``._cat.jpg`` resource forks, ``.complete`` markers,
# ``.git``) are junk too; see is_junk_name.
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})

# Suffixes PawLab decodes (core.data.images reads exactly these formats).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def split_of(folder_name: str) -> Split | None:
    """The split a folder name stands for, or None for any other folder."""
    return SPLIT_ALIASES.get(folder_name.lower())


def is_unlabeled_folder(folder_name: str) -> bool:
    """Whether a folder holds photos without a class (``unlabeled/``, ``Unlabelled/``)."""
    return folder_name.lower() in UNLABELED_FOLDERS


def unsafe_name_reason(name: str) -> str | None:
    """Why a class or file name cannot travel (into labels.txt, a CSV, a zip), or None.

    Control characters split lines in every text file a name is written to
    (a class ``dogs\ncats`` is two lines of labels.txt for one output).
    """
    if not name.strip():
        return "it is empty"
    if any(unicodedata.category(character) in _LINE_BREAKING for character in name):
        return "it holds a control character (a line break, a tab...)"
    return None


def is_junk_name(name: str) -> bool:
    """One file or folder name that is never data: skipped silently, not reported."""
    if name in (".", ".."):  # path steps, not names; archive.py refuses ".." itself
        return False
    return name.startswith(".") or name in JUNK_NAMES


def is_junk(path: str) -> bool:
    """A path (``/`` or ``\\`` separated, as in a zip) with a junk name anywhere in it."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    return any(is_junk_name(part) for part in parts)


def is_image_name(name: str) -> bool:
    """Whether a file name has a photo suffix; decoding decides whether it is one."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS
