"""TensorFlow's own JPEG decoder for the tf.data pipeline, close to Pillow's pixels.

core.data.images decodes with Pillow, which in tf.data costs a Python call per
photo (``tf.numpy_function``, the GIL held between the C parts). For a plain
JPEG the graph can take the same libjpeg steps instead:

* DCT scaling by 1/2, 1/4 or 1/8 while decoding, the largest that keeps both
  sides at least the target size: Pillow's draft mode (``draft_scale``);
* libjpeg's accurate integer IDCT, the one Pillow uses (TensorFlow's default
  fast IDCT is up to 18 levels off);
* an area resize (the mean of the source pixels each target pixel covers),
  close to Pillow's BILINEAR, which widens its filter when it shrinks;
* the EXIF orientation, read from the header here and applied after the
  resize: the target is square, and flips and quarter turns commute with a
  separable resize.

Measured on the 2000 training photos at 160 px (2026-12-03, tf.data map, CPU
ms per photo on 2 shared cores; pixel levels off Pillow's, mean / 99th
percentile / max): the area resize 0.85 ms, 0.77 / 6 / 66; the antialiased
bilinear resize 1.9-2.0 ms, 0.16 / 1 / 1 (TensorFlow's ScaleAndTranslate is
slow); the plain bilinear 0.87 ms, 1.5 / 13 / 117 (it aliases); Pillow in
tf.numpy_function 1.5-2.2 ms; the tutorial's decode_image and plain bilinear
0.8-0.9 ms. So the area resize, the only one as cheap as the tutorial's
decode that stays close to Pillow; tests/test_native_decode.py holds its
bound, and benchmarks/bench_decode.py measures how often a model answers
the same on either decode.

Which files take this path is decided per file before the dataset is built,
from the first bytes of the file (``plan_decodes``): a baseline or progressive
8-bit JPEG, grayscale or YCbCr, within the pixel caps of core.data.images and
a share of the decode budget. Everything else - PNG, WebP, GIF, BMP, CMYK,
12-bit or arithmetic-coded JPEGs, camera MPO files, an orientation only XMP
or a second EXIF block holds - keeps Pillow's path (``PILLOW``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import tensorflow as tf

from core.config import Settings, get_settings
from core.data.images import DECODED_BYTES_PER_PIXEL, header_problem

JPEG_START = b"\xff\xd8"
# DCT scales libjpeg decodes at, from the largest (Pillow's draft tries them in this order).
DCT_RATIOS = (8, 4, 2, 1)
# Frame headers TensorFlow's decoder reads as Pillow does: baseline, extended and progressive Huffman.
NATIVE_FRAMES = {0xC0, 0xC1, 0xC2}
# Every other frame header (lossless, arithmetic-coded, hierarchical) means Pillow decides.
OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers without a length field.
STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}
START_OF_SCAN, END_OF_IMAGE = 0xDA, 0xD9
EXIF_ORIENTATION_TAG = 0x0112
TIFF_SHORT = 3
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
MPF_HEADER = b"MPF\x00"
# Bytes read at once while looking for the frame header: most photos have it in the first 2 KB.
HEADER_READ_BYTES = 4096
# libjpeg's accurate integer IDCT, Pillow's: the default fast one is up to 18 levels off.
DCT_METHOD = "INTEGER_ACCURATE"


@dataclass(frozen=True)
class DecodePlan:
    """How the pipeline decodes one file: TensorFlow at ``ratio`` (0: Pillow)."""

    ratio: int = 0
    orientation: int = 1  # EXIF orientation 1-8, applied after the resize

    @property
    def native(self) -> bool:
        return self.ratio > 0


PILLOW = DecodePlan()


@dataclass(frozen=True)
class JpegHeader:
    frame: int  # the SOF marker's second byte
    precision: int
    width: int
    height: int
    components: int
    orientation: int | None  # None: Pillow would have to decide (XMP, two EXIF blocks, odd tag)


def draft_scale(width: int, height: int, target: int) -> int:
    """The DCT scale Pillow's draft picks to decode ``width`` x ``height`` for a ``target`` square."""
    scale = min(width // target, height // target)
    return next((ratio for ratio in DCT_RATIOS if scale >= ratio), 1)


def plan_decodes(paths: list[str], image_size: int) -> list[DecodePlan]:
    """Each file's decode: TensorFlow's for a plain JPEG that stays within the limits, else PILLOW."""
    settings = get_settings()
    # tf.data runs at most one decode per core at once: each keeps to its share of the budget.
    decode_share = settings.decode_budget_bytes // (os.cpu_count() or 1)
    return [_plan(path, image_size, settings, decode_share) for path in paths]


def _plan(path: str, image_size: int, settings: Settings, decode_share: int) -> DecodePlan:
    try:
        with open(path, "rb", buffering=0) as file:  # one read for most headers: no buffer
            num_bytes = os.fstat(file.fileno()).st_size
            header = read_jpeg_header(file)
    except (OSError, ValueError, struct.error):
        return PILLOW  # Pillow reads it again and says what is wrong in a sentence
    if header is None or header.orientation is None or header.frame not in NATIVE_FRAMES:
        return PILLOW
    if header.precision != 8 or header.components not in (1, 3):
        return PILLOW  # 12-bit, CMYK and YCCK: Pillow converts them
    if header_problem(os.path.basename(path), "JPEG", (header.width, header.height), num_bytes, settings):
        return PILLOW  # Pillow refuses it with the sentence
    ratio = draft_scale(header.width, header.height, image_size)
    decoded_bytes = -(-header.width // ratio) * -(-header.height // ratio) * DECODED_BYTES_PER_PIXEL
    if decoded_bytes > decode_share:
        return PILLOW  # Pillow's decodes wait for the budget
    return DecodePlan(ratio, header.orientation)


class _Header:
    """The start of a file, read further only when a segment needs it."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.data = file.read(HEADER_READ_BYTES)

    def bytes_at(self, offset: int, count: int) -> bytes:
        missing = offset + count - len(self.data)
        if missing > 0:
            self.data += self.file.read(max(missing, HEADER_READ_BYTES))
            if offset + count > len(self.data):
                raise ValueError("the header ends early")
        return self.data[offset : offset + count]


def read_jpeg_header(file: BinaryIO) -> JpegHeader | None:
    """The frame header and EXIF orientation of a JPEG, read up to its frame header; None if not a JPEG."""
    header = _Header(file)
    if header.bytes_at(0, 2) != JPEG_START:
        return None
    offset, exif_blocks, has_xmp, orientation = 2, 0, False, None
    while True:
        prefix, marker = header.bytes_at(offset, 2)
        offset += 2
        if prefix != 0xFF or marker in (START_OF_SCAN, END_OF_IMAGE):
            return None
        if marker == 0xFF:  # a fill byte
            offset -= 1
            continue
        if marker in STANDALONE_MARKERS:
            continue
        (length,) = struct.unpack(">H", header.bytes_at(offset, 2))
        if length < 2:
            return None
        if marker in NATIVE_FRAMES or marker in OTHER_FRAMES:
            precision, height, width, components = struct.unpack(">BHHB", header.bytes_at(offset + 2, 6))
            if exif_blocks > 1 or (orientation is None and has_xmp):
                orientation = None  # Pillow joins EXIF blocks, or reads the orientation from XMP
            elif orientation is None:
                orientation = 1
            return JpegHeader(marker, precision, width, height, components, orientation)
        if marker == 0xE1:  # APP1: EXIF or XMP
            segment = header.bytes_at(offset + 2, length - 2)
            if segment.startswith(EXIF_HEADER):
                exif_blocks += 1
                orientation = exif_orientation(segment[len(EXIF_HEADER) :])
            has_xmp |= segment.startswith(XMP_HEADER)
        elif marker == 0xE2 and header.bytes_at(offset + 2, min(length - 2, len(MPF_HEADER))) == MPF_HEADER:
            return None  # a camera's multi-picture file: Pillow's MPO reader picks the frame
        offset += length


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of EXIF's first directory, None without one; ValueError when odd.

    Like Pillow's exif_transpose, a value outside 2-8 means no change (1).
    """
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise ValueError("not a TIFF byte order")
    (directory,) = struct.unpack_from(order + "I", tiff, 4)
    (entries,) = struct.unpack_from(order + "H", tiff, directory)
    for index in range(entries):
        start = directory + 2 + 12 * index
        tag, kind, count = struct.unpack_from(order + "HHI", tiff, start)
        if tag == EXIF_ORIENTATION_TAG:
            if kind != TIFF_SHORT or count != 1:
                raise ValueError("an orientation Pillow reads its own way")
            (value,) = struct.unpack_from(order + "H", tiff, start + 8)
            return value if 1 <= value <= 8 else 1
    return None


def _oriented(image: tf.Tensor, orientation: int) -> tf.Tensor:
    """``image`` turned as Pillow's ImageOps.exif_transpose turns a photo of this EXIF orientation."""
    turns = {
        1: lambda: image,  # as stored
        2: lambda: tf.image.flip_left_right(image),
        3: lambda: tf.image.rot90(image, 2),
        4: lambda: tf.image.flip_up_down(image),
        5: lambda: tf.image.transpose(image),
        6: lambda: tf.image.rot90(image, 3),  # a quarter turn clockwise
        7: lambda: tf.image.rot90(tf.image.transpose(image), 2),
        8: lambda: tf.image.rot90(image, 1),  # a quarter turn counter-clockwise
    }
    # A Python choice, made when the graph is built: the pipeline maps each
    # (ratio, orientation) group of files on its own (a tf.switch_case in the
    # map cost several ms per photo).
    return turns[orientation]()


def decode_jpeg_resized(contents: tf.Tensor, ratio: int, orientation: int, image_size: int) -> tf.Tensor:
    """(image_size, image_size, 3) uint8 pixels of JPEG ``contents``, close to core.data.images.load_resized's."""
    image = tf.io.decode_jpeg(contents, channels=3, ratio=ratio, dct_method=DCT_METHOD)
    resized = tf.image.resize(image, (image_size, image_size), method="area")  # means of 0-255 values
    pixels = tf.cast(resized + 0.5, tf.uint8)  # rounds half up, as Pillow does
    return _oriented(pixels, orientation)
