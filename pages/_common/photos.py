"""Cached reads every page shares: a dataset's scan and split, photo thumbnails.

One cache each, so the Dataset page's browser and the Train page's
misclassified photos reuse the same thumbnails, and both pages the same scan.
Scans are keyed by the dataset's folder times (a photo added or removed
refreshes them), photos by path and modification time. Every page sees the
dataset as training does: with its corrections (core.data.corrections)
applied, relabelled photos in their new class and excluded ones skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.data.corrections import apply_corrections, load_corrections
from core.data.dataset import DatasetError, DatasetInfo, scan_dataset
from core.data.images import ImageError
from core.data.splits import Splits, make_splits
from core.data.thumbnails import display_jpeg, photo_details, thumbnail_jpeg


def folder_signature(root: str) -> tuple:
    """Modification times of the folders of a dataset (3 levels deep).

    Adding or removing a photo changes its folder's time, so the scan cache
    below is refreshed; reading a few folder times costs next to nothing.
    """
    signature = []
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop()
        signature.append((folder, os.stat(folder).st_mtime_ns))
        if depth < 3:
            with os.scandir(folder) as entries:
                pending += [(e.path, depth + 1) for e in entries if e.is_dir() and not e.name.startswith(".")]
    return tuple(sorted(signature))


@st.cache_data(show_spinner=False, max_entries=8)
def _scan(root: str, signature: tuple) -> DatasetInfo:
    return scan_dataset(root)  # has its own disk cache of which files decode


@st.cache_data(show_spinner=False, max_entries=16)
def _corrected(root: str, signature: tuple, corrections: tuple) -> tuple[DatasetInfo, Splits]:
    info = apply_corrections(_scan(root, signature), dict(corrections))
    return info, make_splits(info)


def load_dataset(root: str | Path) -> tuple[DatasetInfo, Splits]:
    """Scan ``root`` (raises core.data.dataset.DatasetError), apply its corrections and
    split it as training does."""
    root = str(root)
    try:
        signature = folder_signature(root)
    except OSError as error:
        raise DatasetError(f"The dataset folder cannot be read: {error.strerror}.") from None
    corrections = tuple(sorted(load_corrections(root).mapping.items(), key=lambda item: item[0]))
    with st.spinner("Reading every photo once to find unreadable files (cached afterwards)…"):
        return _corrected(root, signature, corrections)


@st.cache_data(show_spinner=False, max_entries=5000)
def _thumbnail(path: str, mtime_ns: int) -> bytes | None:
    try:
        return thumbnail_jpeg(path)  # core's thumbnail size
    except (ImageError, OSError):
        return None  # changed on disk since the scan


def thumbnail(path: str | Path) -> bytes | None:
    """A square JPEG thumbnail, or None when the file can no longer be read."""
    try:
        return _thumbnail(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _large_photo(path: str, mtime_ns: int):
    return display_jpeg(path), photo_details(path)


def large_photo(path: str | Path):
    """(JPEG bytes at display size, PhotoDetails); raises ImageError or OSError."""
    return _large_photo(str(path), os.stat(path).st_mtime_ns)
