"""What the end-to-end journey needs from outside the app: the dataset as a
zip on a loopback web server, a few photos to drop, and README screenshots.

The zip has the official layout (``cats_and_dogs_filtered/{train,validation}/
{cats,dogs}/*.jpg``) with a small subset of the real photos, so the Dataset
page's own "Download" button fetches it as it would fetch Google's file.
The server sends it in small slices with short pauses, like a real network,
so the download lasts long enough for a person (and the test) to see the
progress bar move.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

ZIP_NAME = "cats_and_dogs_filtered.zip"  # the app names the dataset after the file
WRAPPER = "cats_and_dogs_filtered"
SPLITS, CLASSES = ("train", "validation"), ("cats", "dogs")
README_SCREENSHOT_LIMIT = 300_000  # bytes per PNG in assets/


def build_dataset_zip(cats_and_dogs: Path, zip_path: Path, per_folder: int) -> tuple[Path, set[str]]:
    """Zip the first ``per_folder`` photos of each split and class; returns the
    zip and the names of the photos in it (so the Classify story can drop
    photos the model never saw)."""
    names = set()
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress
        for split in SPLITS:
            for name in CLASSES:
                for photo in sorted((cats_and_dogs / split / name).glob("*.jpg"))[:per_folder]:
                    archive.write(photo, f"{WRAPPER}/{split}/{name}/{photo.name}")
                    names.add(photo.name)
    return zip_path, names


# Validation photos for the Classify story: clear, colourful, and not in the zip.
PHOTOS_TO_DROP = {"cats": "cat.4491.jpg", "dogs": "dog.4492.jpg"}


def photo_to_drop(cats_and_dogs: Path, class_name: str, zipped: set[str]) -> Path:
    """A real photo of ``class_name`` the trained model has never seen."""
    photo = cats_and_dogs / "validation" / class_name / PHOTOS_TO_DROP[class_name]
    assert photo.is_file() and photo.name not in zipped, photo
    return photo


@contextlib.contextmanager
def serve_slowly(payload_path: Path, seconds: float = 2.0, slices: int = 20) -> Iterator[str]:
    """Serve ``payload_path`` at ``http://127.0.0.1:<port>/<its name>`` for the
    duration of the ``with`` block, taking about ``seconds`` to send it."""
    payload = payload_path.read_bytes()
    slice_size = max(1, -(-len(payload) // slices))
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path != f"/{payload_path.name}":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for start in range(0, len(payload), slice_size):
                self.wfile.write(payload[start : start + slice_size])
                self.wfile.flush()
                time.sleep(seconds / slices)

        def log_message(self, *args):  # keep pytest's output for the test
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{payload_path.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def save_readme_screenshot(source: Path, target: Path, limit: int = README_SCREENSHOT_LIMIT) -> int:
    """Copy a screenshot into assets/, re-encoded to stay under ``limit`` bytes.

    A 1280x800 screenshot full of photos can exceed the limit as a lossless
    PNG; then it is reduced to 256 colours, which a screenshot of mostly flat
    user interface survives without visible change. Returns the file size.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(source).convert("RGB")
    image.save(target, optimize=True)
    if target.stat().st_size > limit:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            target, optimize=True
        )
    size = target.stat().st_size
    if size > limit:
        raise AssertionError(f"{target.name} is {size:,} bytes even with 256 colours (limit {limit:,})")
    return size
