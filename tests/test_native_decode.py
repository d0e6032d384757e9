"""TensorFlow's JPEG decode gives Pillow's pixels (core.data.images.load_resized) within a
bound, and every file it would not decode as Pillow does is left to Pillow."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from core.data.images import load_resized
from core.data.native_decode import PILLOW, DecodePlan, decode_jpeg_resized, draft_scale, plan_decodes

SIZE = 160
# Levels (0-255) native pixels may differ from Pillow's (the area resize against Pillow's
# bilinear filter). Measured on 1500 shared photos (2026-12-03): 0.77 on average, 3.7 for
# the worst photo; the 99th percentile of all pixels 6. A wrong orientation or DCT scale
# is tens of levels off on average.
PHOTO_MEAN_LEVELS = 4.5
ALL_MEAN_LEVELS, ALL_P99_LEVELS = 1.0, 8


def native_pixels(path, plan: DecodePlan) -> np.ndarray:
    import tensorflow as tf

    contents = tf.io.read_file(str(path))
    return decode_jpeg_resized(contents, plan.ratio, plan.orientation, SIZE).numpy()


def assert_matches_pillow(path, plan: DecodePlan) -> np.ndarray:
    difference = np.abs(native_pixels(path, plan).astype(int) - load_resized(path, SIZE).astype(int))
    assert difference.mean() <= PHOTO_MEAN_LEVELS, path
    return difference


def photo(size=(500, 375)) -> Image.Image:
    """A photo-like picture: smooth gradients and an edge, so turns and flips show."""
    yy, xx = np.mgrid[: size[1], : size[0]]
    pixels = np.stack([xx * 255 // size[0], yy * 255 // size[1], (xx + yy) % 256], axis=-1).astype(np.uint8)
    pixels[: size[1] // 3, : size[0] // 4] = (250, 30, 30)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("width,height", [(500, 375), (320, 320), (161, 900), (4000, 3000), (100, 80), (1280, 330)])
def test_the_dct_scale_is_pillows_draft(tmp_path, width, height):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (width, height), "grey").save(path)
    with Image.open(path) as image:
        image.draft("RGB", (SIZE, SIZE))
        assert image.size == (
            -(-width // draft_scale(width, height, SIZE)),
            -(-height // draft_scale(width, height, SIZE)),
        )
    assert plan_decodes([str(path)], SIZE)[0].ratio == draft_scale(width, height, SIZE)


def test_shared_photos_match_pillow(cats_and_dogs):
    photos = sorted((cats_and_dogs / "train" / "cats").iterdir())[:20]
    photos += sorted((cats_and_dogs / "validation" / "dogs").iterdir())[:20]
    plans = plan_decodes([str(path) for path in photos], SIZE)
    assert all(plan.native for plan in plans)
    differences = np.stack([assert_matches_pillow(path, plan) for path, plan in zip(photos, plans)])
    assert differences.mean() <= ALL_MEAN_LEVELS
    assert np.percentile(differences, 99) <= ALL_P99_LEVELS


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"turned{orientation}.jpg"
    photo().save(path, exif=exif.tobytes(), quality=92)
    (plan,) = plan_decodes([str(path)], SIZE)
    assert plan == DecodePlan(ratio=2, orientation=orientation)
    assert_matches_pillow(path, plan)


def test_a_grayscale_and_a_progressive_jpeg_decode_natively(tmp_path):
    photo().convert("L").save(tmp_path / "grey.jpg")
    photo().save(tmp_path / "progressive.jpg", progressive=True)
    for name in ("grey.jpg", "progressive.jpg"):
        (plan,) = plan_decodes([str(tmp_path / name)], SIZE)
        assert plan.native, name
        assert_matches_pillow(tmp_path / name, plan)


def test_what_pillow_converts_or_refuses_is_left_to_pillow(tmp_path):
    photo().convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo().convert("RGBA").save(tmp_path / "alpha.png")
    photo().save(tmp_path / "plain.png")
    photo().save(tmp_path / "photo.webp")
    photo().convert("P").save(tmp_path / "palette.gif")
    Image.fromarray((np.arange(200 * 200, dtype=np.uint16) % 65535).reshape(200, 200)).save(tmp_path / "deep.png")
    # XMP may hold an orientation Pillow reads; two EXIF blocks Pillow joins.
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    photo().save(tmp_path / "xmp.jpg", xmp=xmp)
    # A header declaring far more pixels than its bytes can hold (truncated or forged).
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG")
    forged = bytearray(buffer.getvalue())
    struct.pack_into(">HH", forged, forged.index(b"\xff\xc0") + 5, 7000, 7000)
    (tmp_path / "forged.jpg").write_bytes(bytes(forged))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a photo")

    names = ["cmyk.jpg", "alpha.png", "plain.png", "photo.webp", "palette.gif", "deep.png", "xmp.jpg"]
    names += ["forged.jpg", "empty.jpg", "text.jpg", "missing.jpg"]
    plans = plan_decodes([str(tmp_path / name) for name in names], SIZE)
    assert dict(zip(names, plans)) == dict.fromkeys(names, PILLOW)


def test_a_decode_over_its_share_of_the_budget_is_left_to_pillow(tmp_path, monkeypatch):
    photo((2000, 1500)).save(tmp_path / "big.jpg")
    assert plan_decodes([str(tmp_path / "big.jpg")], SIZE)[0].ratio == 8  # 250x188 decoded
    monkeypatch.setenv("PAWLAB_DECODE_BUDGET_BYTES", str(250 * 188 * 4))  # the share is half of it on 2 cores
    monkeypatch.setattr("core.data.native_decode.os.cpu_count", lambda: 2)
    assert plan_decodes([str(tmp_path / "big.jpg")], SIZE) == [PILLOW]


def test_the_pipeline_keeps_file_order_across_decoders(tmp_path):
    """Files of different plans decode in maps of their own; the pipeline hands them back in order."""
    from core.data.images import Pixels
    from core.data.pipeline import decoded_pixels

    names = []
    for index, (name, orientation) in enumerate(
        [("a.jpg", 1), ("b.png", 0), ("c.jpg", 6), ("d.jpg", 1), ("e.webp", 0), ("f.jpg", 3), ("g.jpg", 6)]
    ):
        picture = photo().rotate(40 * index)  # each file its own pixels, so a swap shows
        if orientation:
            exif = Image.Exif()
            exif[0x0112] = orientation
            picture.save(tmp_path / name, exif=exif.tobytes(), quality=92)
        else:
            picture.save(tmp_path / name)
        names.append(name)
    paths = [str(tmp_path / name) for name in names]
    assert len(set(plan_decodes(paths, SIZE))) == 4  # Pillow, and three native plans

    decoded = [image.numpy() for image in decoded_pixels(paths, SIZE, Pixels.FAST)]
    assert len(decoded) == len(paths)
    for path, pixels in zip(paths, decoded):
        expected = load_resized(path, SIZE).astype(int)
        assert np.abs(pixels.astype(int) - expected).mean() <= PHOTO_MEAN_LEVELS, path
