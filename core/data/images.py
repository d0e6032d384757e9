"""Reading photos safely: one decode path for scanning, training and inference.

Every image PawLab touches goes through ``open_rgb``: Pillow opens it, refuses
decompression bombs, applies the EXIF orientation, takes the first frame of an
animation and converts any mode (grayscale, palette, RGBA, CMYK, 16-bit) to
8-bit RGB. ``load_resized`` adds the resize that the tf.data pipeline and the
inference code share, so a file gets the same pixels in both.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import get_settings
from core.data.layout import IMAGE_EXTENSIONS, is_image_name  # noqa: F401 (IMAGE_EXTENSIONS: re-export)

# What Pillow says a file is, for the suffixes in IMAGE_EXTENSIONS (MPO: a
# camera's multi-picture JPEG).
SUPPORTED_FORMATS = {"JPEG", "PNG", "BMP", "GIF", "WEBP", "MPO"}
# Scanning decodes JPEGs at 1/2..1/8 scale down to about this size: every byte
# is still read (so truncation shows), at a fraction of the cost.
CHECK_DRAFT_SIZE = (64, 64)

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]


class ImageError(ValueError):
    """A file that is not a usable image; the message is meant for a person."""


def _as_file(source: ImageSource):
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    return source


def _name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", "upload")


def open_rgb(
    source: ImageSource,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode ``source`` fully into an 8-bit RGB image, or raise ImageError.

    ``draft_size`` lets JPEG decoding scale down by a power of two while
    decoding (much faster for thumbnails and training at 160 px).
    """
    max_pixels = max_pixels or get_settings().max_image_pixels
    name = _name(source)
    if isinstance(source, (str, os.PathLike)) and os.path.getsize(source) == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    if isinstance(source, (bytes, bytearray)) and len(source) == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(_as_file(source))
            if image.format not in SUPPORTED_FORMATS:
                raise ImageError(
                    f"{name} is a {image.format} image; PawLab reads "
                    "JPEG, PNG, BMP, GIF and WebP."
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{name} is {width}x{height} pixels, more than the "
                    f"{max_pixels:,} pixel limit."
                )
            if draft_size and image.format == "JPEG":
                image.draft("RGB", draft_size)
            image.load()  # decodes everything now: truncated files fail here
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
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


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping to white.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        array = (array / peak * 255.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    ):
        # Transparent pixels become white, as a browser would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


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
