"""Downloading files and the official dataset from a loopback HTTP server.

No test touches the internet: a ThreadingHTTPServer on 127.0.0.1 serves a
small zip laid out like cats_and_dogs_filtered.zip, and can be told to drop
the connection halfway, answer 404 or serve garbage.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import core.data.download
from core.config import get_settings
from core.data.acquire import fetch_official_dataset, list_local_datasets
from core.data.archive import ArchiveError
from core.data.download import DownloadError, download_file


def jpeg_bytes(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def official_like_zip() -> bytes:
    """cats_and_dogs_filtered/{train,validation}/{cats,dogs}/*.jpg plus macOS junk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        seed = 0
        for split in ("train", "validation"):
            for animal in ("cats", "dogs"):
                for i in range(3):
                    name = f"cats_and_dogs_filtered/{split}/{animal}/{animal[:-1]}.{i}.jpg"
                    archive.writestr(name, jpeg_bytes(seed))
                    seed += 1
        archive.writestr("cats_and_dogs_filtered/vectorize.py", "print('hi')\n")
        archive.writestr("__MACOSX/cats_and_dogs_filtered/._vectorize.py", b"\0" * 10)
    return buffer.getvalue()


@pytest.fixture
def server():
    """A loopback server; set `routes[path] = (mode, body)`; `requests` lists paths hit.

    Modes: "ok", "drop" (announce the full Content-Length, send half, hang up),
    "drop_once" (drop the first request only).
    """
    routes: dict[str, tuple[str, bytes]] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            mode, body = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "drop" or (mode == "drop_once" and requests.count(self.path) == 1):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", routes=routes, requests=requests)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(core.data.download, "RETRY_WAIT_S", 0.0)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def leftovers(folder: Path) -> list[str]:
    """Everything under `folder` except the lock files and the empty downloads folder."""
    found = []
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.name.endswith(".lock") or (path.is_dir() and not any(path.iterdir())):
            continue
        found.append(str(path.relative_to(folder)))
    return found


# --- download_file -----------------------------------------------------------


def test_downloads_to_the_same_file_at_once_do_not_collide(server, tmp_path):
    body = os.urandom(300_000)
    server.routes["/blob.bin"] = ("ok", body)
    dest = tmp_path / "blob.bin"
    errors = []

    def fetch():
        try:
            download_file(server.url + "/blob.bin", dest, chunk_size=4096, retries=0)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert dest.read_bytes() == body
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]  # no .part left


def test_download_streams_with_progress_up_to_total(server, tmp_path):
    body = os.urandom(100_000)
    server.routes["/blob.bin"] = ("ok", body)
    calls = []

    dest = download_file(
        server.url + "/blob.bin",
        tmp_path / "sub" / "blob.bin",
        progress=lambda done, total: calls.append((done, total)),
        chunk_size=8192,
    )

    assert dest.read_bytes() == body
    assert not (tmp_path / "sub" / "blob.bin.part").exists()
    assert len(calls) > 5
    assert calls[0] == (0, len(body))
    assert calls[-1] == (len(body), len(body))
    done = [d for d, _ in calls]
    assert done == sorted(done)


def test_dropped_connection_raises_and_leaves_no_partial_file(server, tmp_path):
    body = os.urandom(3_000_000)
    server.routes["/big.zip"] = ("drop", body)
    dest = tmp_path / "big.zip"

    with pytest.raises(DownloadError) as error:
        download_file(server.url + "/big.zip", dest, retries=1)

    message = str(error.value)
    assert server.url + "/big.zip" in message
    assert "connection dropped after 1.5 MB of 3.0 MB" in message
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 2  # one clean retry, then give up


def test_retry_restarts_cleanly_after_a_drop(server, tmp_path):
    body = os.urandom(200_000)
    server.routes["/flaky.bin"] = ("drop_once", body)

    dest = download_file(server.url + "/flaky.bin", tmp_path / "flaky.bin")

    assert dest.read_bytes() == body
    assert len(server.requests) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flaky.bin"]


def test_http_error_is_reported_and_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(server.url + "/missing.zip", tmp_path / "missing.zip", retries=2)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_unexpected_size_is_refused(server, tmp_path):
    server.routes["/blob.bin"] = ("ok", b"x" * 5000)
    with pytest.raises(DownloadError, match="5.0 KB but 6.0 KB was expected"):
        download_file(server.url + "/blob.bin", tmp_path / "blob.bin", expected_size=6000)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_gives_a_readable_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=f"Could not reach http://127.0.0.1:{port}/x.zip"):
        download_file(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", retries=0)
    assert list(tmp_path.iterdir()) == []


def test_only_http_urls_are_downloaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    with pytest.raises(DownloadError, match="only http"):
        download_file(secret.as_uri(), tmp_path / "copy.txt")
    assert not (tmp_path / "copy.txt").exists()


# --- fetch_official_dataset ---------------------------------------------------


def test_fetch_downloads_extracts_and_then_works_offline(server, home, monkeypatch):
    body = official_like_zip()
    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", body)
    monkeypatch.setenv("PAWLAB_DATASET_URL", server.url + "/cats_and_dogs_filtered.zip")
    calls = []

    root = fetch_official_dataset(progress=lambda *args: calls.append(args))

    datasets_dir = get_settings().datasets_dir
    assert root == datasets_dir / "cats_and_dogs_filtered"
    for split in ("train", "validation"):
        for animal in ("cats", "dogs"):
            photos = sorted((root / split / animal).iterdir())
            assert len(photos) == 3
            assert Image.open(photos[0]).size == (48, 48)
    assert not (root / "__MACOSX").exists()
    assert list_local_datasets() == [root]
    assert leftovers(datasets_dir / "downloads") == []  # the zip is not kept

    downloads = [(done, total) for stage, done, total in calls if stage == "download"]
    assert downloads[-1] == (len(body), len(body))
    assert [d for d, _ in downloads] == sorted(d for d, _ in downloads)
    extracts = [(done, total) for stage, done, total in calls if stage == "extract"]
    assert extracts[-1][0] == extracts[-1][1] > 0
    assert [stage for stage, _, _ in calls].index("extract") > 0  # download first

    calls.clear()
    assert fetch_official_dataset(progress=lambda *args: calls.append(args)) == root
    assert len(server.requests) == 1  # no network the second time
    assert calls == []


def test_interrupted_fetch_leaves_nothing_and_next_call_succeeds(server, home, monkeypatch):
    body = official_like_zip()
    server.routes["/cats_and_dogs_filtered.zip"] = ("drop", body)
    monkeypatch.setenv("PAWLAB_DATASET_URL", server.url + "/cats_and_dogs_filtered.zip")

    with pytest.raises(DownloadError, match="connection dropped"):
        fetch_official_dataset()

    datasets_dir = get_settings().datasets_dir
    assert leftovers(datasets_dir) == []  # no .part, no half dataset
    assert list_local_datasets() == []

    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", body)
    root = fetch_official_dataset()
    assert len(list((root / "train" / "dogs").iterdir())) == 3
    assert list_local_datasets() == [root]


def test_corrupt_download_gives_clear_error_and_no_dataset(server, home, monkeypatch):
    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", b"<html>Oops, not a zip</html>" * 100)
    monkeypatch.setenv("PAWLAB_DATASET_URL", server.url + "/cats_and_dogs_filtered.zip")

    with pytest.raises(ArchiveError, match="not a zip archive, or it is damaged"):
        fetch_official_dataset()

    datasets_dir = get_settings().datasets_dir
    assert leftovers(datasets_dir) == []
    assert list_local_datasets() == []

    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", official_like_zip())
    assert (fetch_official_dataset() / "validation" / "cats").is_dir()


def test_two_sessions_fetching_at_once_download_once(server, home, monkeypatch):
    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", official_like_zip())
    monkeypatch.setenv("PAWLAB_DATASET_URL", server.url + "/cats_and_dogs_filtered.zip")
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_official_dataset())
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(set(results)) == 1 and len(results) == 3
    assert len(server.requests) == 1


# --- A read-only or full PAWLAB_HOME: one sentence, no retries ---------------------


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def test_read_only_download_folder_is_one_sentence_and_not_retried(server, tmp_path, monkeypatch):
    server.routes["/blob.bin"] = ("ok", os.urandom(10_000))

    def read_only(*args, **kwargs):
        raise _oserror(errno.EROFS)

    monkeypatch.setattr(core.data.download.tempfile, "mkstemp", read_only)
    with pytest.raises(DownloadError) as error:
        download_file(server.url + "/blob.bin", tmp_path / "blob.bin")

    assert str(error.value) == f"PawLab cannot write to {tmp_path} (read-only file system)."
    assert not error.value.retryable and server.requests == ["/blob.bin"]


def test_full_disk_while_downloading_is_one_sentence(server, tmp_path, monkeypatch):
    server.routes["/blob.bin"] = ("ok", os.urandom(10_000))

    def no_room(*args):
        raise _oserror(errno.ENOSPC)

    monkeypatch.setattr(core.data.download.os, "fsync", no_room)
    with pytest.raises(DownloadError) as error:
        download_file(server.url + "/blob.bin", tmp_path / "blob.bin")

    assert str(error.value) == f"PawLab cannot write to {tmp_path} (the disk is full)."
    assert not error.value.retryable and list(tmp_path.iterdir()) == []


def test_fetch_into_a_read_only_home_is_one_sentence(server, home, monkeypatch):
    server.routes["/cats_and_dogs_filtered.zip"] = ("ok", official_like_zip())
    monkeypatch.setenv("PAWLAB_DATASET_URL", server.url + "/cats_and_dogs_filtered.zip")
    real_mkdir = Path.mkdir

    def read_only(path, *args, **kwargs):
        if path.name == "downloads":
            raise _oserror(errno.EROFS)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(
        DownloadError,
        match=r"^PawLab cannot write to .*/downloads "
        r"\(read-only file system\)\.$",
    ):
        fetch_official_dataset()
    assert list_local_datasets() == []
