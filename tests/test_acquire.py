"""What an import leaves behind when it dies, and what a person reads when PAWLAB_HOME
cannot be written."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO
from test_archive import pets, visible, zip_bytes

import core.data.archive
from core.config import get_settings
from core.data import acquire
from core.data.acquire import DatasetError, import_zip, list_local_datasets, sweep_abandoned_imports

# How long the test waits for the child import to reach its extraction.
CHILD_START_SECONDS = 60

IMPORT_THAT_HANGS = """
import sys, time
from core.data.acquire import import_zip

def progress(stage, done, total):
    if stage == "extract" and done > 0:
        print("extracting", flush=True)
        time.sleep(600)

import_zip(sys.argv[1], "pets", progress=progress)
"""


def import_folders(datasets_dir):
    return sorted(p.name for p in datasets_dir.glob(".*.import-*"))


def test_sigkilled_import_is_swept_and_a_live_one_is_kept(tmp_path):
    upload = tmp_path / "pets.zip"
    upload.write_bytes(zip_bytes(pets()))
    datasets_dir = get_settings().datasets_dir
    child = subprocess.Popen(
        [sys.executable, "-c", IMPORT_THAT_HANGS, str(upload)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "extracting"
        assert len(import_folders(datasets_dir)) == 1

        sweep_abandoned_imports()  # the import is alive: its lock is held
        assert len(import_folders(datasets_dir)) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(CHILD_START_SECONDS)

    assert len(import_folders(datasets_dir)) == 1  # SIGKILL cleans nothing up
    sweep_abandoned_imports()
    assert import_folders(datasets_dir) == []
    assert list_local_datasets() == []
    # The name is free for the next attempt.
    assert import_zip(upload, "pets") == datasets_dir / "pets"


def test_sweep_removes_dead_leftovers_only(tmp_path):
    settings = get_settings()
    datasets_dir = settings.datasets_dir
    kept = import_zip(io.BytesIO(zip_bytes(pets())), "kept")
    leftover = datasets_dir / ".old.import-k2j3h4" / "extracted" / "cats"
    leftover.mkdir(parents=True)
    (leftover / "cat.jpg").write_bytes(b"x" * 1000)
    part = datasets_dir / "downloads" / ".cats_and_dogs_filtered.zip.abc123.part"
    part.parent.mkdir()
    part.write_bytes(b"half a download")
    other_hidden = datasets_dir / ".notes"
    other_hidden.mkdir()

    sweep_abandoned_imports(settings)

    assert import_folders(datasets_dir) == []
    assert not part.exists()
    assert other_hidden.is_dir() and list_local_datasets() == [kept]


# --- A read-only or full PAWLAB_HOME: one sentence, nothing left behind -------------


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def test_read_only_home_is_one_sentence_on_import(monkeypatch):
    def read_only(*args, **kwargs):
        raise oserror(errno.EROFS)

    monkeypatch.setattr(acquire.tempfile, "mkdtemp", read_only)
    with pytest.raises(acquire.ACQUIRE_ERRORS) as error:
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")

    datasets_dir = get_settings().datasets_dir
    assert isinstance(error.value, DatasetError)
    assert str(error.value) == f"PawLab cannot write to {datasets_dir} (read-only file system)."


def test_full_disk_while_extracting_is_one_sentence_and_no_leftovers(monkeypatch):
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise oserror(errno.ENOSPC)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(core.data.archive, "open", full_disk, raising=False)
    with pytest.raises(DatasetError) as error:
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")

    datasets_dir = get_settings().datasets_dir
    assert str(error.value) == f"PawLab cannot write to {datasets_dir} (the disk is full)."
    assert visible(datasets_dir) == []


def test_an_existing_name_is_still_its_own_message(monkeypatch):
    import_zip(io.BytesIO(zip_bytes(pets())), "pets")
    with pytest.raises(FileExistsError, match="'pets' already exists"):
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")


def test_zip_limits_come_from_the_settings(monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_ZIP_ENTRIES", "3")
    with pytest.raises(acquire.ArchiveError, match="more than the 3 allowed"):
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")
    monkeypatch.setenv("PAWLAB_MAX_ZIP_ENTRIES", "100")
    monkeypatch.setenv("PAWLAB_MAX_COMPRESSION_RATIO", "2")
    blank = {"cats/blank.jpg": b"\0" * 2_000_000, **pets()}
    with pytest.raises(acquire.ArchiveError, match="more than the 2:1 allowed"):
        import_zip(io.BytesIO(zip_bytes(blank, zipfile.ZIP_DEFLATED)), "pets")


def test_read_only_datasets_folder_is_one_sentence_before_the_lock(monkeypatch):
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock"):
            raise oserror(errno.EROFS)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(
        DatasetError,
        match=r"^PawLab cannot write to .*datasets "
        r"\(read-only file system\)\.$",
    ):
        import_zip(io.BytesIO(zip_bytes(pets())), "pets")
