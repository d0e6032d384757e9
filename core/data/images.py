"""Reading photos safely: one decode path for scanning, training and inference.

Every image PawLab touches goes through ``open_rgb``: Pillow opens it, refuses
decompression bombs, applies the EXIF orientation, takes the first frame of an
animation and converts any mode (grayscale, palette, RGBA, CMYK, 16-bit) to
8-bit RGB. ``load_resized`` adds the resize that the tf.data pipeline and the
inference code share, so a file gets the same pixels in both.

What one decode may cost is bounded before it starts, from the header:
JPEGs decode at reduced scale (draft), so a 50 MP phone photo stays cheap;
PNG, WebP, GIF and BMP always decode every pixel and get a lower cap; a JPEG
far too small for the pixels it declares is refused (its data ends early and
would decode as grey); and the decodes of all threads of a process share one
memory budget (``DECODE_BUDGET``), so a scan's parallel decodes cannot add up.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import Settings, get_settings
from core.data.download import format_size
from core.data.layout import IMAGE_EXTENSIONS, is_image_name  # noqa: F401 (IMAGE_EXTENSIONS: re-export)

# What Pillow says a file is, for the suffixes in IMAGE_EXTENSIONS (MPO: a
# camera's multi-picture JPEG).
SUPPORTED_FORMATS = {"JPEG", "PNG", "BMP", "GIF", "WEBP", "MPO"}
# Formats whose decoder scales down while decoding (draft): they get the JPEG
# pixel cap; every other format decodes in full and gets the lower lossless cap.
DRAFT_FORMATS = {"JPEG", "MPO"}
# Scanning decodes JPEGs at 1/2..1/8 scale down to about this size: every byte
# is still read (so truncation shows), at a fraction of the cost.
CHECK_DRAFT_SIZE = (64, 64)
# A JPEG whose data ends early decodes as grey without an error. Real photos
# hold far more than one byte per this many declared pixels (the shared cats
# and dogs: at most 14 pixels per byte; a flat-colour JPEG about 64). Lossless
# decoders report missing data themselves.
MAX_PIXELS_PER_BYTE = 2_000
# Bytes per pixel a decode is counted at against the decode budget (RGBA).
DECODED_BYTES_PER_PIXEL = 4

ImageSource = str | os.PathLike | bytes | BinaryIO


class ImageError(ValueError):
    """A file that is not a usable image; the message is meant for a person."""


class DecodeBudget:
    """Bytes of decoded pixels the threads of this process may hold at once.

    A decode waits until its bytes fit; one larger than the whole budget runs
    alone, so nothing waits forever.
    """

    def __init__(self):
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, num_bytes: int, limit: int):
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight == 0 or self._in_flight + num_bytes <= limit)
            self._in_flight += num_bytes
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= num_bytes
                self._changed.notify_all()


# One budget for every decode of this process: scans, thumbnails, Classify.
DECODE_BUDGET = DecodeBudget()


def _as_file(source: ImageSource):
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    return source


def _name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", "upload")


def _byte_size(source: ImageSource) -> int | None:
    """The bytes Pillow will read from ``source``, or None when that cannot be told."""
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


def open_rgb(
    source: ImageSource,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode ``source`` fully into an 8-bit RGB image, or raise ImageError.

    ``max_pixels`` replaces the JPEG pixel cap (the lossless cap still applies).
    ``draft_size`` lets JPEG decoding scale down by a power of two while
    decoding (much faster for thumbnails and training at 160 px).
    """
    settings = get_settings()
    name = _name(source)
    num_bytes = _byte_size(source)
    if num_bytes == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(_as_file(source))
            _check_header(image, name, num_bytes, max_pixels, settings)
            if draft_size and image.format in DRAFT_FORMATS:
                image.draft("RGB", draft_size)
            width, height = image.size
            cost = width * height * DECODED_BYTES_PER_PIXEL
            with DECODE_BUDGET.hold(cost, settings.decode_budget_bytes):
                image.load()  # decodes everything now: truncated files fail here
                return _to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file Pillow can read.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely.") from None
    except (OSError, SyntaxError, ValueError) as error:
        message = str(error)
        if "truncated" in message.lower():
            raise ImageError(f"{name} is truncated or corrupt.") from None
        raise ImageError(f"{name} could not be decoded: {message}.") from None


def _check_header(
    image: Image.Image, name: str, num_bytes: int | None, max_pixels: int | None, settings: Settings
) -> None:
    """Refuse, before decoding, what a decode of ``image`` must not cost."""
    problem = header_problem(name, str(image.format), image.size, num_bytes, settings, max_pixels)
    if problem:
        raise ImageError(problem)


def header_problem(
    name: str,
    image_format: str,
    size: tuple[int, int],
    num_bytes: int | None,
    settings: Settings,
    max_pixels: int | None = None,
) -> str | None:
    """Why a file of this format, (width, height) and byte size must not be decoded, or None.

    Every decode path asks this before it decodes (Pillow's here, TensorFlow's in
    core.data.native_decode).
    """
    if image_format not in SUPPORTED_FORMATS:
        return f"{name} is a {image_format} image; PawLab reads JPEG, PNG, BMP, GIF and WebP."
    width, height = size
    pixels = width * height
    cap = max_pixels or settings.max_image_pixels
    kind = ""
    if image_format not in DRAFT_FORMATS:
        cap, kind = min(cap, settings.max_lossless_pixels), f" for {image_format}"
    if pixels > cap:
        return f"{name} is {width}x{height} pixels, more than the {cap:,} pixel limit{kind}."
    if image_format in DRAFT_FORMATS and num_bytes and pixels > num_bytes * MAX_PIXELS_PER_BYTE:
        return f"{name} declares {width}x{height} pixels in only {num_bytes:,} bytes: it is truncated or corrupt."
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping to white.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        array = (array / peak * 255.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as a browser would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class Pixels(StrEnum):
    """How a dataset's files decode (core.data.pipeline)."""

    INFERENCE = "inference"  # load_resized for every file: what Classify and the API see
    FAST = "fast"  # TensorFlow's JPEG decoder where it applies (core.data.native_decode): training photos


def load_resized(source: ImageSource, image_size: int | tuple[int, int]) -> np.ndarray:
    """The pixels a model sees: RGB uint8 array of shape (height, width, 3).

    Used by the tf.data pipeline (training, evaluation) and by inference.
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = image_size
    image = open_rgb(source, draft_size=(width, height))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def check_image(path: str | os.PathLike) -> str | None:
    """None when ``path`` decodes as a supported image, else the reason why not."""
    if not is_image_name(Path(path).name):
        return f"unsupported file type '{Path(path).suffix or 'none'}'"
    try:
        open_rgb(path, draft_size=CHECK_DRAFT_SIZE)
    except ImageError as error:
        return str(error)
    return None


def check_drop(sizes: list[int]) -> str | None:
    """None when a Classify drop of files of these ``sizes`` (bytes) is within the
    limits, else the sentence to show instead of classifying."""
    settings = get_settings()
    if len(sizes) > settings.max_drop_photos:
        return f"That is {len(sizes)} photos; PawLab classifies at most {settings.max_drop_photos} at a time."
    total = sum(sizes)
    if total > settings.max_drop_bytes:
        return (
            f"Those photos take {format_size(total)}; PawLab classifies at most "
            f"{format_size(settings.max_drop_bytes)} at a time."
        )
    return None
