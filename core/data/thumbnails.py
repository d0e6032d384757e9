"""Small JPEG copies of photos for browsing a dataset.

A browser page shows a few dozen photos at a time; sending full-size photos
would be slow, and decoding them fully is wasteful. ``open_rgb`` with a draft
size lets the JPEG decoder scale down while decoding, so a thumbnail costs a
fraction of a full decode. The Dataset page caches the bytes these functions
return, keyed by path and modification time.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from core.data.images import open_rgb

# Grid thumbnails: square, small, and compressed harder than photos shown alone.
THUMBNAIL_SIZE = 160
THUMBNAIL_QUALITY = 80
# One photo shown on its own: at most this many pixels on its longer side.
DISPLAY_MAX_SIDE = 640
DISPLAY_QUALITY = 85
JPEG_QUALITY = 90
# EXIF's Orientation tag; values 5 to 8 turn the photo by 90 degrees.
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class PhotoDetails:
    name: str
    width: int
    height: int
    file_bytes: int


def to_jpeg(image, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a PIL image or an RGB uint8 array.

    Browsers get JPEG bytes rather than arrays: Streamlit would otherwise
    PNG-encode each array on every rerun, which is slow.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def thumbnail_jpeg(path: str | os.PathLike, size: int = THUMBNAIL_SIZE, quality: int = THUMBNAIL_QUALITY) -> bytes:
    """A ``size`` x ``size`` centre crop, so a grid of photos lines up."""
    image = open_rgb(path, draft_size=(size, size))
    square = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return to_jpeg(square, quality)


def display_jpeg(path: str | os.PathLike, max_side: int = DISPLAY_MAX_SIDE, quality: int = DISPLAY_QUALITY) -> bytes:
    """The whole photo, at most ``max_side`` pixels wide or high."""
    image = open_rgb(path, draft_size=(max_side, max_side))
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return to_jpeg(image, quality)


def photo_details(path: str | os.PathLike) -> PhotoDetails:
    """Name, pixel size (after EXIF rotation) and file size, without decoding pixels."""
    path = Path(path)
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS:  # width and height swap
            width, height = height, width
    return PhotoDetails(path.name, width, height, path.stat().st_size)
