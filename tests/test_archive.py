"""Safe zip extraction, uploads, local folders and finding the dataset root.

Archives are built in memory with a few small JPEGs (Pillow); every refusal
must name the problem and leave nothing on disk.
"""

from __future__ import annotations

import io
import stat
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import get_settings
from core.data.acquire import (
    DatasetError,
    find_dataset_root,
    import_zip,
    list_local_datasets,
    use_local_folder,
)
from core.data.archive import ArchiveError, UnsafeArchiveError, safe_extract_zip
from core.data.dataset import scan_dataset


def jpeg_bytes(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def zip_bytes(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """Members: name -> bytes/str, or a ZipInfo -> bytes/str for odd headers."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def pets(prefix: str = "") -> dict:
    return {
        f"{prefix}{animal}/{animal}.{i}.jpg": jpeg_bytes(10 * len(animal) + i)
        for animal in ("cats", "dogs")
        for i in range(2)
    }


@pytest.fixture
def out(tmp_path) -> Path:
    """An empty folder to extract into; a refusal must leave it empty."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    return tmp_path / "home"


def visible(folder: Path) -> list[str]:
    """Files and folders left under `folder`, ignoring lock files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(".lock"))


# --- safe_extract_zip ---------------------------------------------------------


def test_extracts_files_and_skips_macos_junk(out):
    members = pets("photos/")
    junk = {"__MACOSX/photos/._cats": b"x", "photos/cats/._cats.0.jpg": b"x", "photos/.DS_Store": b"x"}
    source = io.BytesIO(zip_bytes({**members, **junk}))
    calls = []

    dest = safe_extract_zip(
        source, out / "pets", max_bytes=10**6, progress=lambda done, total: calls.append((done, total))
    )

    assert dest == out / "pets"
    for name, data in members.items():
        assert (dest / name).read_bytes() == data
    assert visible(out) == sorted(
        ["pets", "pets/photos", "pets/photos/cats", "pets/photos/dogs"] + [f"pets/{name}" for name in members]
    )
    total = sum(len(data) for data in members.values())
    assert calls[-1] == (total, total)


@pytest.mark.parametrize(
    "bad_name, problem",
    [
        ("photos/../../evil.txt", "outside the extraction folder"),
        ("../evil.txt", "outside the extraction folder"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("photos\\..\\..\\evil.txt", "outside the extraction folder"),
    ],
)
def test_paths_escaping_the_folder_are_refused(out, tmp_path, bad_name, problem):
    source = io.BytesIO(zip_bytes({**pets("photos/"), bad_name: b"gotcha"}))

    with pytest.raises(UnsafeArchiveError, match=problem) as error:
        safe_extract_zip(source, out / "pets", max_bytes=10**6)

    assert repr(bad_name) in str(error.value)
    assert visible(out) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_symlink_member_is_refused(out):
    link = zipfile.ZipInfo("photos/cats/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    source = io.BytesIO(zip_bytes({**pets("photos/"), link: "/etc/passwd"}))

    with pytest.raises(UnsafeArchiveError, match="'photos/cats/link.jpg' is a symbolic link"):
        safe_extract_zip(source, out / "pets", max_bytes=10**6)
    assert visible(out) == []


def test_archive_larger_than_the_limit_is_refused(out):
    # 1 MB of zeros compresses to about 1 KB: a small zip bomb.
    source = io.BytesIO(zip_bytes({"photos/cats/big.jpg": b"\0" * 1_000_000}))
    assert len(source.getvalue()) < 5_000

    with pytest.raises(UnsafeArchiveError, match="more than 100.0 KB"):
        safe_extract_zip(source, out / "pets", max_bytes=100_000)
    assert visible(out) == []


def test_header_understating_the_size_is_refused(out):
    data = bytes(range(256)) * 40  # 10 KB, stored uncompressed
    raw = bytearray(zip_bytes({"photos/cats/a.jpg": data}, zipfile.ZIP_STORED))
    size = len(data).to_bytes(4, "little")
    small = (100).to_bytes(4, "little")
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    assert raw[local + 22 : local + 26] == size and raw[central + 24 : central + 28] == size
    raw[local + 22 : local + 26] = small  # the headers now claim 100 bytes
    raw[central + 24 : central + 28] = small

    with pytest.raises(ArchiveError, match="damaged"):
        safe_extract_zip(io.BytesIO(bytes(raw)), out / "pets", max_bytes=1_000)
    assert visible(out) == []


def test_corrupted_member_fails_the_checksum(out, tmp_path):
    data = jpeg_bytes(1)
    raw = bytearray(zip_bytes({"photos/cats/a.jpg": data, **pets("photos/")}, zipfile.ZIP_STORED))
    at = raw.index(data) + len(data) // 2
    raw[at] ^= 0xFF
    path = tmp_path / "upload.zip"
    path.write_bytes(bytes(raw))

    with pytest.raises(ArchiveError, match="'upload.zip' is damaged: 'photos/cats/a.jpg' fails"):
        safe_extract_zip(path, out / "pets", max_bytes=10**6)
    assert visible(out) == []


def test_not_a_zip_is_refused(out, tmp_path):
    path = tmp_path / "photo.zip"
    path.write_bytes(jpeg_bytes(3))
    with pytest.raises(ArchiveError, match="'photo.zip' is not a zip archive"):
        safe_extract_zip(path, out / "pets", max_bytes=10**6)
    assert visible(out) == []


def test_empty_archive_is_refused(out):
    source = io.BytesIO(zip_bytes({"__MACOSX/._x": b"x", "photos/": b""}))
    with pytest.raises(ArchiveError, match="contains no files"):
        safe_extract_zip(source, out / "pets", max_bytes=10**6)
    assert visible(out) == []


def test_existing_destination_is_not_touched(out):
    (out / "pets").mkdir()
    (out / "pets" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        safe_extract_zip(io.BytesIO(zip_bytes(pets())), out / "pets", max_bytes=10**6)
    assert visible(out) == ["pets", "pets/keep.txt"]


# --- zip bombs: entries that share bytes, too many entries, too much compression ----

# CPU seconds a refusal may take: a bomb must be refused on its headers alone.
REFUSAL_CPU_SECONDS = 0.5
_EOCD = b"PK\x05\x06"
_CENTRAL = b"PK\x01\x02"


def with_extra_central_records(raw: bytes, records: bytes, count: int) -> bytes:
    """`raw` with `count` more central-directory records appended (end record fixed up)."""
    end = raw.rindex(_EOCD)
    entries, size, _offset = struct.unpack_from("<HLL", raw, end + 10)
    new_end = bytearray(raw[end:])
    struct.pack_into("<HHL", new_end, 8, entries + count, entries + count, size + len(records))
    return raw[:end] + records + bytes(new_end)


def central_record(raw: bytes, name: bytes) -> bytes:
    """The central-directory record of the member `name` in the zip `raw`."""
    at = raw.index(_CENTRAL)
    while True:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, at + 28)
        end = at + 46 + name_len + extra_len + comment_len
        if raw[at + 46 : at + 46 + name_len] == name:
            return raw[at:end]
        at = end


def overlap_bomb(copies: int, payload_bytes: int) -> bytes:
    """Photos, plus `copies` junk entries that all point at one deflated run of zeros:
    a checker that decompresses every entry pays `copies * payload_bytes`."""
    name = "__MACOSX/._bomb"
    raw = zip_bytes({name: b"\0" * payload_bytes, **pets("photos/")})
    record = central_record(raw, name.encode())
    return with_extra_central_records(raw, record * (copies - 1), copies - 1)


def nested_overlap() -> bytes:
    """Two photos with distinct names where the first entry's data holds the second
    entry's local header and data (Fifield's overlapping construction, stored)."""
    inner = zip_bytes({"photos/dogs/b.jpg": jpeg_bytes(2)}, zipfile.ZIP_STORED)
    header_and_data = inner[: inner.index(_CENTRAL)]
    outer_name = "photos/cats/a.jpg"
    raw = zip_bytes({outer_name: header_and_data, **pets("photos/")}, zipfile.ZIP_STORED)
    inner_record = bytearray(central_record(inner, b"photos/dogs/b.jpg"))
    # The inner entry starts right after the outer one's local header.
    struct.pack_into("<L", inner_record, 42, 30 + len(outer_name))
    return with_extra_central_records(raw, bytes(inner_record), 1)


def refuse_quickly(source, out, match, **limits):
    limits.setdefault("max_bytes", 10**9)
    start = time.process_time()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract_zip(source, out / "pets", **limits)
    spent = time.process_time() - start
    assert spent < REFUSAL_CPU_SECONDS, f"refusal took {spent:.2f} s of CPU"
    assert visible(out) == []


def test_entries_pointing_at_the_same_bytes_are_refused_quickly(out):
    bomb = overlap_bomb(copies=16, payload_bytes=32 * 1024**2)  # 512 MB to inflate
    assert len(bomb) < 200_000
    refuse_quickly(io.BytesIO(bomb), out, "twice|overlap")


def test_overlapping_entries_with_distinct_names_are_refused(out):
    raw = nested_overlap()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:  # both entries really read back
        assert archive.read("photos/dogs/b.jpg") == jpeg_bytes(2)
    refuse_quickly(io.BytesIO(raw), out, "'photos/cats/a.jpg' and 'photos/dogs/b.jpg' overlap")


def test_duplicate_names_are_refused(out):
    raw = zip_bytes(pets("photos/"))
    doubled = with_extra_central_records(raw, central_record(raw, b"photos/cats/cats.0.jpg"), 1)
    refuse_quickly(io.BytesIO(doubled), out, "'photos/cats/cats.0.jpg' twice")


def test_junk_entries_count_against_the_entry_cap_before_parsing(out, monkeypatch):
    junk = {f"__MACOSX/._{i}": b"" for i in range(150)}
    source = io.BytesIO(zip_bytes({**junk, **pets()}))

    def no_parsing(self):
        raise AssertionError("zipfile parsed the central directory")

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", no_parsing)
    refuse_quickly(source, out, "154 entries, more than the 100 allowed", max_members=100)


def test_an_end_record_that_understates_the_entries_is_refused(out):
    raw = bytearray(zip_bytes({**{f"__MACOSX/._{i}": b"" for i in range(150)}, **pets()}))
    end = raw.rindex(_EOCD)
    struct.pack_into("<HH", raw, end + 8, 1, 1)  # claims one entry
    refuse_quickly(io.BytesIO(bytes(raw)), out, "more than the 100 allowed", max_members=100)


def test_an_entry_that_compresses_too_well_is_refused(out):
    # 4 MB of zeros deflate to about 4 KB: 1000:1, where photos are about 1:1.
    source = io.BytesIO(zip_bytes({"photos/cats/zeros.jpg": b"\0" * 4_000_000, **pets("photos/")}))
    refuse_quickly(
        source, out, r"'photos/cats/zeros.jpg' compresses 1,\d\d\d:1, more than the 200:1 allowed", max_ratio=200
    )


def test_many_small_entries_that_compress_too_well_are_refused(out):
    # Each is too small for the per-entry check; together they are a bomb.
    members = {f"photos/cats/{i}.jpg": b"\0" * 200_000 for i in range(40)}
    refuse_quickly(
        io.BytesIO(zip_bytes(members)), out, r"it compresses \d[\d,]*:1, more than the 200:1 allowed", max_ratio=200
    )


def test_a_corrupt_entry_still_fails_while_extracting(out):
    # No separate checksum pass: the CRC is checked as the kept entries are written.
    data = jpeg_bytes(5)
    raw = bytearray(zip_bytes({"photos/cats/a.jpg": data, **pets("photos/")}, zipfile.ZIP_STORED))
    raw[raw.index(data) + 100] ^= 0xFF
    with pytest.raises(ArchiveError, match="'photos/cats/a.jpg' fails its checksum"):
        safe_extract_zip(io.BytesIO(bytes(raw)), out / "pets", max_bytes=10**6)
    assert visible(out) == []


def test_real_cats_and_dogs_zip_imports(cats_and_dogs, home):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "validation"):
            for animal in ("cats", "dogs"):
                for photo in sorted((cats_and_dogs / split / animal).iterdir())[:20]:
                    archive.write(photo, f"cats_and_dogs_filtered/{split}/{animal}/{photo.name}")
        archive.writestr("__MACOSX/cats_and_dogs_filtered/._train", b"\0" * 4096)

    root = import_zip(buffer, "cats and dogs")

    assert scan_dataset(root).counts() == {"train": {"cats": 20, "dogs": 20}, "validation": {"cats": 20, "dogs": 20}}


def test_an_import_over_the_datasets_quota_is_refused(home, monkeypatch):
    first = import_zip(io.BytesIO(zip_bytes(pets())), "first")
    used = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    # Room for the first dataset and half of the second.
    monkeypatch.setenv("PAWLAB_MAX_DATASETS_BYTES", str(used + used // 2))

    with pytest.raises(ArchiveError, match="PAWLAB_MAX_DATASETS_BYTES") as error:
        import_zip(io.BytesIO(zip_bytes(pets("more/"))), "second")

    assert "no room" in str(error.value).lower()
    assert list_local_datasets() == [first]


# --- import_zip -----------------------------------------------------------------


def test_upload_with_a_wrapper_folder_is_unwrapped(home):
    upload = io.BytesIO(zip_bytes(pets("My Pets/train/") | pets("My Pets/validation/")))
    upload.read()  # Streamlit may hand over a file that was read already

    root = import_zip(upload, "My pets!")

    assert root == get_settings().datasets_dir / "My_pets"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["train", "validation"]
    assert (root / "train" / "cats" / "cats.0.jpg").is_file()
    assert list_local_datasets() == [root]


def test_upload_name_clash_keeps_the_old_dataset_unless_replaced(home):
    first = import_zip(io.BytesIO(zip_bytes(pets())), "pets")
    with pytest.raises(FileExistsError, match="'pets' already exists"):
        import_zip(io.BytesIO(zip_bytes(pets("animals/"))), "pets")
    assert (first / "cats" / "cats.0.jpg").is_file()

    only_dogs = {name: data for name, data in pets().items() if name.startswith("dogs")}
    root = import_zip(io.BytesIO(zip_bytes(only_dogs)), "pets", overwrite=True)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["dogs"]
    assert visible(get_settings().datasets_dir) == [  # the old one is gone, no leftovers
        "pets",
        "pets/.complete",
        "pets/dogs",
        "pets/dogs/dogs.0.jpg",
        "pets/dogs/dogs.1.jpg",
    ]


@pytest.mark.parametrize(
    "members, error, problem",
    [
        ({"notes/readme.txt": "no photos here"}, DatasetError, "no photos"),
        ({"../escape.jpg": jpeg_bytes(0)}, UnsafeArchiveError, "outside"),
    ],
)
def test_bad_upload_leaves_no_dataset(home, members, error, problem):
    with pytest.raises(error, match=problem):
        import_zip(io.BytesIO(zip_bytes(members)), "broken")
    assert list_local_datasets() == []
    assert visible(get_settings().datasets_dir) == []


def test_upload_larger_than_the_configured_limit_is_refused(home, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(UnsafeArchiveError, match="more than 1.0 KB"):
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")
    assert visible(get_settings().datasets_dir) == []


@pytest.mark.parametrize("name", ["", "  ", "../..", "downloads"])
def test_unusable_dataset_names_are_refused(home, name):
    with pytest.raises(DatasetError):
        import_zip(io.BytesIO(zip_bytes(pets())), name)


# --- local folders and the dataset root -------------------------------------------


def write_tree(root: Path, members: dict) -> None:
    for name, data in members.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_local_folder_needs_the_operator_flag(home, tmp_path, monkeypatch):
    write_tree(tmp_path / "photos", pets("wrapper/"))

    with pytest.raises(PermissionError, match="PAWLAB_ALLOW_LOCAL_PATHS=1"):
        use_local_folder(tmp_path / "photos")

    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    assert use_local_folder(tmp_path / "photos") == (tmp_path / "photos" / "wrapper").resolve()
    with pytest.raises(FileNotFoundError, match="no folder at"):
        use_local_folder(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no photos"):
        use_local_folder(tmp_path / "photos" / "wrapper" / "cats")  # images but no classes


@pytest.mark.parametrize(
    "members, expected",
    [
        (pets(), ""),  # class folders at the top
        (pets("a/b/"), "a/b"),  # nested wrappers
        (pets("w/train/"), "w"),  # a lone train/ is a split, not a wrapper
        ({"only/cats/1.jpg": b"x"}, "only"),  # one class folder is not unwrapped
        ({"w/cats/1.jpg": b"x", "w/.hidden/x": b"x", "__MACOSX/w/._x": b"x"}, "w"),
        ({"w/x.jpg": b"x", "w/cats/1.jpg": b"x"}, "w"),
    ],
)
def test_find_dataset_root(tmp_path, members, expected):
    write_tree(tmp_path / "d", members)
    assert find_dataset_root(tmp_path / "d") == tmp_path / "d" / expected
