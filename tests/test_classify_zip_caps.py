"""The Classify zip's caps: photos per batch and the bytes a batch really writes, refused
from the zip's central directory before anything is extracted (issue 21).

A 17.7 MB zip of 99,999 tiny PNGs used to be accepted: it wrote 393 MB and
100k inodes to /tmp while the size cap counted 7.7 MB.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.data.archive import ArchiveError
from core.serving.batch import photos_in_folder, photos_in_zip


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(names: list[str], data: bytes, compression: int = zipfile.ZIP_STORED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name in names:
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def nothing_extracted(tmp_path: Path) -> bool:
    """No work folder, and no hidden staging folder beside it."""
    return list(tmp_path.iterdir()) == []


def refused_before_extracting(monkeypatch) -> None:
    """Extraction itself fails the test: the refusal must come from the central directory."""

    def extracting(*args, **kwargs):
        raise AssertionError("the zip was extracted before it was refused")

    monkeypatch.setattr("core.serving.batch.safe_extract_zip", extracting)


def test_the_setting_is_a_few_thousand_photos_and_read_from_the_environment(monkeypatch):
    from core.config import SettingsError, get_settings

    assert 1000 <= get_settings().max_batch_photos <= 10_000
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "12")
    assert get_settings().max_batch_photos == 12
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "lots")
    with pytest.raises(SettingsError, match="PAWLAB_MAX_BATCH_PHOTOS"):
        get_settings()


def test_the_issues_zip_of_99999_tiny_pngs_is_refused_in_one_sentence_before_anything_is_written(tmp_path, monkeypatch):
    names = [f"tiny/{i:05d}.png" for i in range(99_999)]
    upload = zip_of(names, tiny_png())
    refused_before_extracting(monkeypatch)
    work = tmp_path / "work"
    work.mkdir()

    started = time.monotonic()
    with pytest.raises(ArchiveError) as refused:
        photos_in_zip(upload, work / "photos")

    assert time.monotonic() - started < 20  # the script thread is not held: no extraction, no model
    message = str(refused.value)
    assert message.startswith("The archive holds 99,999 photos; PawLab classifies at most ")
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert nothing_extracted(work)


def test_one_photo_over_the_cap_is_refused_and_the_cap_itself_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "5")
    png = tiny_png()

    with pytest.raises(ArchiveError, match=r"holds 6 photos; PawLab classifies at most 5 at a time\.$"):
        photos_in_zip(zip_of([f"{i}.png" for i in range(6)], png), tmp_path / "six")
    assert not (tmp_path / "six").exists()

    photos = photos_in_zip(zip_of([f"{i}.png" for i in range(5)], png), tmp_path / "five")
    assert [p.name for p in photos] == [f"{i}.png" for i in range(5)]


def test_files_that_are_not_photos_count_too_since_they_are_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "10")
    refused_before_extracting(monkeypatch)
    names = ["cat.png"] + [f"notes/{i}.txt" for i in range(20)]

    with pytest.raises(ArchiveError, match=r"holds 21 files; PawLab unpacks at most 10 from one zip\.$"):
        photos_in_zip(zip_of(names, b"x"), tmp_path / "w")
    assert nothing_extracted(tmp_path)


def test_the_size_cap_counts_whole_disk_blocks_not_declared_bytes(tmp_path, monkeypatch):
    """60 files of 70 bytes declare 4 KB but take 60 blocks of 4 KB (and a folder's) on disk."""
    monkeypatch.setenv("PAWLAB_MAX_DROP_BYTES", "200000")
    refused_before_extracting(monkeypatch)
    upload = zip_of([f"tiny/{i}.png" for i in range(60)], tiny_png())

    with pytest.raises(ArchiveError) as refused:
        photos_in_zip(upload, tmp_path / "w")

    assert str(refused.value) == (
        "The archive would take 254.0 KB on disk once unpacked (60 files in 2 folders), "
        "more than the 200.0 KB a batch may use."
    )
    assert nothing_extracted(tmp_path)


def test_what_a_batch_writes_is_at_most_what_was_counted(tmp_path, monkeypatch):
    from core.data.archive import zip_contents
    from core.serving.batch import DISK_BLOCK, unpack_cost

    names = [f"a/b/{i}.png" for i in range(30)] + ["a/readme.txt"]
    upload = zip_of(names, tiny_png() * 50)  # about 3.5 KB each: one block
    cost = unpack_cost(zip_contents(upload, max_bytes=10**9).members)
    assert (cost.files, cost.photos, cost.folders) == (31, 30, 3)  # the extraction folder, a/, a/b/
    assert cost.disk_bytes == (31 + 3) * DISK_BLOCK

    photos_in_zip(upload, tmp_path / "w")

    on_disk = sum(os.lstat(path).st_blocks * 512 for path in [tmp_path / "w", *(tmp_path / "w").rglob("*")])
    assert on_disk <= cost.disk_bytes


def test_a_server_folder_over_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "3")
    png = tiny_png()
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png)

    with pytest.raises(ArchiveError, match=r"holds more than 3 photos; PawLab classifies at most 3 at a time\.$"):
        photos_in_folder(tmp_path)

    (tmp_path / "3.png").unlink()
    assert len(photos_in_folder(tmp_path)) == 3


def test_headers_that_understate_a_size_cannot_make_extraction_write_more(tmp_path, monkeypatch):
    """The caps trust declared sizes because zipfile never writes more of an entry than they say:
    a photo declared at 10 bytes whose data is 300 KB writes 10 bytes, then fails its checksum."""
    import struct

    monkeypatch.setenv("PAWLAB_MAX_DROP_BYTES", "100000")
    real = io.BytesIO()
    Image.effect_noise((300, 300), 64).convert("RGB").save(real, "PNG")
    data = zip_of(["lies.png"], real.getvalue()).getvalue()
    assert len(real.getvalue()) > 100_000
    central = data.rindex(b"PK\x01\x02")
    lying = bytearray(data)
    struct.pack_into("<L", lying, 22, 10)  # the local header's uncompressed size
    struct.pack_into("<L", lying, central + 24, 10)  # the central directory's

    with pytest.raises(ArchiveError, match="fails its checksum"):
        photos_in_zip(io.BytesIO(bytes(lying)), tmp_path / "w")
    assert nothing_extracted(tmp_path)
