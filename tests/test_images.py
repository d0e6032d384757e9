"""What one photo may cost to decode: pixel caps per format, forged headers, and a memory
budget for the scan's parallel decodes. Phone photos must stay cheap and accepted."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

import core.data.dataset
from core.data.dataset import scan_dataset
from core.data.images import ImageError, check_drop, check_image, load_resized, open_rgb

# CPU seconds a refusal may take: it must come from the header, not a decode.
REFUSAL_CPU_SECONDS = 0.5


@pytest.fixture
def decodes(monkeypatch):
    """Sizes of the images Pillow really decodes (ImageFile.load) during the test."""
    seen = []
    real_load = ImageFile.ImageFile.load

    def spy(image):
        seen.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return seen


def refused_quickly(source, match: str, decodes: list) -> None:
    start = time.process_time()
    with pytest.raises(ImageError, match=match):
        open_rgb(source)
    assert time.process_time() - start < REFUSAL_CPU_SECONDS
    assert decodes == []


# --- Formats that decode at full size have a lower pixel cap -------------------------


@pytest.fixture(scope="module")
def flat_rgba_png(tmp_path_factory):
    """7000x7000 RGBA of one colour: 49 MP, under the 50 MP cap, about 200 KB on disk."""
    path = tmp_path_factory.mktemp("big") / "flat.png"
    Image.new("RGBA", (7000, 7000), (10, 20, 30, 255)).save(path)
    return path


def test_a_large_png_is_refused_on_its_header(flat_rgba_png, decodes):
    assert flat_rgba_png.stat().st_size < 300_000
    refused_quickly(flat_rgba_png, "7000x7000 pixels, more than the 16,000,000 pixel limit for PNG", decodes)


def test_lossless_cap_is_a_setting(tmp_path, monkeypatch, decodes):
    Image.new("RGB", (300, 300), "red").save(tmp_path / "red.webp", lossless=True)
    monkeypatch.setenv("PAWLAB_MAX_LOSSLESS_PIXELS", "80000")
    refused_quickly(tmp_path / "red.webp", "more than the 80,000 pixel limit for WEBP", decodes)


def test_a_24_megapixel_jpeg_photo_still_decodes(cats_and_dogs, tmp_path):
    photo = sorted((cats_and_dogs / "train" / "cats").iterdir())[0]
    big = tmp_path / "phone.jpg"
    Image.open(photo).convert("RGB").resize((6000, 4000), Image.Resampling.BILINEAR).save(big, quality=90)

    assert check_image(big) is None
    start = time.process_time()
    pixels = load_resized(big, 160)
    assert pixels.shape == (160, 160, 3)
    assert time.process_time() - start < 1.0  # JPEG draft: decoded at 1/8 scale


# --- Forged headers: a few bytes declaring millions of pixels -------------------------


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose frame header (SOF0) is patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, height, width)
    return bytes(data)


def test_a_tiny_jpeg_declaring_49_megapixels_is_refused(tmp_path, decodes):
    path = tmp_path / "forged.jpg"
    path.write_bytes(jpeg_declaring(7000, 7000))
    assert path.stat().st_size < 1000
    with Image.open(path) as image:
        assert image.size == (7000, 7000)

    refused_quickly(path, r"forged.jpg declares 7000x7000 pixels in only \d+ bytes", decodes)
    refused_quickly(path.read_bytes(), "declares 7000x7000 pixels", decodes)  # an upload


def test_a_png_with_a_forged_header_is_still_an_image_error(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = data.index(b"IHDR")
    struct.pack_into(">II", data, header + 4, 4000, 4000)
    struct.pack_into(">I", data, header + 17, zlib.crc32(bytes(data[header : header + 17])))
    with pytest.raises(ImageError, match="truncated"):
        open_rgb(bytes(data))


def test_a_truncated_jpeg_is_a_sentence_and_pillow_stays_strict(tmp_path):
    Image.new("RGB", (400, 300), "green").save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"^cut.jpg is truncated or corrupt\.$"):
        open_rgb(tmp_path / "cut.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_screenshots_and_real_photos_are_above_the_size_floor(cats_and_dogs, tmp_path):
    screenshot = Image.new("RGB", (1920, 1080), "white")
    draw = ImageDraw.Draw(screenshot)
    draw.rectangle((0, 0, 1920, 32), fill=(40, 40, 60))
    for y in range(60, 1040, 24):
        draw.text((40, y), "def open_rgb(source):  # a line of code in an editor", fill="black")
    screenshot.save(tmp_path / "screenshot.png")
    Image.new("RGB", (1920, 1080), "white").save(tmp_path / "blank.png")
    Image.new("RGB", (1920, 1080), "white").convert("P").save(tmp_path / "blank-palette.png")
    Image.new("RGB", (4000, 3000), (120, 130, 140)).save(tmp_path / "flat.jpg")

    for name in ("screenshot.png", "blank.png", "blank-palette.png", "flat.jpg"):
        assert check_image(tmp_path / name) is None, name
    photos = sorted((cats_and_dogs / "train" / "dogs").iterdir())[:50]
    assert [check_image(photo) for photo in photos] == [None] * len(photos)


# --- The scan's parallel decodes share a memory budget ---------------------------------


def test_parallel_decodes_stay_within_the_memory_budget(tmp_path, monkeypatch):
    for animal in ("cats", "dogs"):
        (tmp_path / "data" / animal).mkdir(parents=True)
        for i in range(8):
            pixels = np.full((1000, 1000, 3), 16 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / animal / f"{i}.png")
    one_decode = 1000 * 1000 * 4
    monkeypatch.setenv("PAWLAB_DECODE_BUDGET_BYTES", str(one_decode + one_decode // 2))
    monkeypatch.setattr(core.data.dataset.os, "cpu_count", lambda: 8)
    in_flight, peak, lock = [0], [0], threading.Lock()
    real_load = ImageFile.ImageFile.load

    def counting_load(image):
        cost = image.size[0] * image.size[1] * 4
        with lock:
            in_flight[0] += cost
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.02)  # long enough for the other threads to pile up
            return real_load(image)
        finally:
            with lock:
                in_flight[0] -= cost

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    info = scan_dataset(tmp_path / "data", use_cache=False)

    assert info.num_images == 16
    assert peak[0] == one_decode  # one at a time: two would pass the budget


# --- One Classify drop -----------------------------------------------------------------


def test_a_drop_over_the_limits_gets_a_sentence(monkeypatch):
    assert check_drop([2_000_000] * 10) is None
    assert check_drop([]) is None
    assert check_drop([1000] * 201) == ("That is 201 photos; PawLab classifies at most 200 at a time.")
    assert check_drop([150_000_000, 60_000_000]) == (
        "Those photos take 210.0 MB; PawLab classifies at most 200.0 MB at a time."
    )
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "2")
    assert check_drop([1, 1, 1]) == "That is 3 photos; PawLab classifies at most 2 at a time."
