"""Photos of a dataset that is not cats and dogs: three shapes, mixed formats.

``shape_photo(shape, seed, image_format)`` returns the bytes of one small
photo of a coloured shape on noise; each seed gives a different photo, the
same seed the same bytes. ``loose_photos(folder, counts)`` writes a folder of
loose, unlabelled-by-name photos and returns {file name: shape}: what a
Kaggle download or a phone's camera roll looks like.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("circle", "square", "stripe")
FORMATS = ("JPEG", "PNG", "WEBP")
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
COLOURS = {"circle": (220, 40, 40), "square": (40, 90, 220), "stripe": (40, 180, 60)}


def shape_photo(shape: str, seed: int, image_format: str = "JPEG", size: int = 40) -> bytes:
    rng = np.random.default_rng([SHAPES.index(shape), seed])
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    x, y = rng.integers(4, size // 2, 2)
    extent = size // 3
    yy, xx = np.ogrid[:size, :size]
    if shape == "circle":
        mask = (yy - y - extent // 2) ** 2 + (xx - x - extent // 2) ** 2 < (extent // 2) ** 2
    elif shape == "square":
        mask = (yy >= y) & (yy < y + extent) & (xx >= x) & (xx < x + extent)
    else:
        mask = np.broadcast_to((yy >= y) & (yy < y + 4), (size, size))
    pixels[mask] = COLOURS[shape]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def loose_photos(folder: Path, counts: dict[str, int], start_seed: int = 0) -> dict[str, str]:
    """``counts[shape]`` photos of each shape as ``<n>.<suffix>`` in ``folder``, formats mixed."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    number = start_seed
    for shape, count in counts.items():
        for seed in range(count):
            image_format = FORMATS[number % len(FORMATS)]
            name = f"{number:05d}{SUFFIX[image_format]}"
            (folder / name).write_bytes(shape_photo(shape, start_seed + seed, image_format))
            truth[name] = shape
            number += 1
    return truth
