"""ONNX Runtime Web for the exported web page: a pinned version, checked byte for byte.

The page (core.serving.web_export) runs its model with ONNX Runtime Web's
WebAssembly backend, single-threaded, so it needs no cross-origin-isolation
headers and any static server can serve it. It loads three files of the npm
package's ``dist/`` folder, and only those are copied into an export:

    ort.wasm.min.js                the JavaScript API (window.ort)
    ort-wasm-simd-threaded.mjs     the WebAssembly glue it imports
    ort-wasm-simd-threaded.wasm    the runtime itself (about 15 MB)

They come, in this order, from

1. the folder named by ``PAWLAB_WEB_RUNTIME`` (an unpacked package's
   ``dist/``, or the package folder holding it), as CI does with
   ``npm pack onnxruntime-web@VERSION``;
2. ``PAWLAB_HOME/cache/onnxruntime-web-VERSION/``, filled by an earlier call;
3. the npm registry's tarball, downloaded once into that cache with progress
   (core.data.download), refused unless its sha512 is the registry's
   ``dist.integrity`` for this version.

Every file is checked against its pinned sha256 wherever it came from, so a
different version in ``PAWLAB_WEB_RUNTIME`` is refused, never half used. The
runtime is never part of the repository.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

from core.config import get_settings
from core.data.download import DownloadError, ProgressCallback, download_file
from core.fileio import atomic_write

VERSION = "1.31.1"
PACKAGE = f"onnxruntime-web@{VERSION}"
TARBALL_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{VERSION}.tgz"
# The registry's dist.integrity for the tarball (npm view onnxruntime-web@1.31.1 dist.integrity).
TARBALL_INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
TARBALL_BYTES = 34_586_352
# The files the page loads, with the sha256 of this version's dist/ copies.
FILES = {
    "ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",
    "ort-wasm-simd-threaded.mjs": "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
}
ENV_VAR = "PAWLAB_WEB_RUNTIME"


class WebRuntimeMissingError(RuntimeError):
    """ONNX Runtime Web is neither here nor downloadable; the message is one sentence saying what to fetch."""


def runtime_folder(progress: ProgressCallback | None = None) -> Path:
    """A folder holding the pinned runtime files (FILES), checked; downloads them once if need be."""
    named = os.environ.get(ENV_VAR, "").strip()
    if named:
        return _checked_named_folder(Path(named).expanduser())
    cache = cache_folder()
    if _problem(cache) is None:
        return cache
    try:
        _download_into(cache, progress)
    except DownloadError as error:
        raise WebRuntimeMissingError(_missing_sentence(f"it could not be downloaded ({error})")) from None
    return cache


def cache_folder() -> Path:
    return get_settings().cache_dir / f"onnxruntime-web-{VERSION}"


def copy_runtime(folder: Path, progress: ProgressCallback | None = None) -> list[str]:
    """Copy the runtime files into ``folder``; returns their names."""
    source = runtime_folder(progress)
    for name in FILES:
        shutil.copyfile(source / name, folder / name)
    return list(FILES)


# --- checks --------------------------------------------------------------------------


def _checked_named_folder(folder: Path) -> Path:
    """PAWLAB_WEB_RUNTIME's folder (or its dist/), when it holds this very version."""
    if (folder / "dist").is_dir() and not (folder / next(iter(FILES))).is_file():
        folder = folder / "dist"
    problem = _problem(folder)
    if problem is not None:
        raise WebRuntimeMissingError(_missing_sentence(f"{ENV_VAR}={folder} {problem}"))
    return folder


def _problem(folder: Path) -> str | None:
    """None when ``folder`` holds every runtime file with its pinned sha256, else what is wrong."""
    for name, expected in FILES.items():
        path = folder / name
        if not path.is_file():
            return f"has no {name}"
        if _sha256(path.read_bytes()) != expected:
            return f"holds a {name} that is not version {VERSION}'s"
    return None


def _missing_sentence(why: str) -> str:
    return (
        f"The web page needs ONNX Runtime Web {VERSION}, but {why}: run `npm pack {PACKAGE}`, "
        f"unpack the .tgz and set {ENV_VAR} to its package/dist folder "
        f"(or put {', '.join(FILES)} into {cache_folder()})."
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def integrity_of(data: bytes) -> str:
    """npm's Subresource Integrity string for ``data``: sha512-<base64>."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


# --- the download --------------------------------------------------------------------


def _download_into(cache: Path, progress: ProgressCallback | None) -> None:
    """The tarball into the cache, its integrity checked, and the runtime files taken out of it."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = download_file(TARBALL_URL, cache / "package.tgz", progress=progress, expected_size=TARBALL_BYTES)
    try:
        data = tarball.read_bytes()
        if integrity_of(data) != TARBALL_INTEGRITY:
            raise DownloadError(f"the file from {TARBALL_URL} is not the registry's {PACKAGE}", retryable=False)
        for name, content in _members(data, FILES).items():
            if _sha256(content) != FILES[name]:
                raise DownloadError(f"{name} in {PACKAGE} is not the pinned file", retryable=False)
            atomic_write(cache / name, content)
    finally:
        tarball.unlink(missing_ok=True)  # 35 MB the page never loads


def _members(tgz: bytes, names: Iterable[str]) -> dict[str, bytes]:
    """The bytes of ``package/dist/<name>`` for each name (read by name only: nothing is extracted)."""
    wanted = {f"package/dist/{name}": name for name in names}
    found = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as archive:
        for member in archive:
            if member.name in wanted and member.isfile():
                file = archive.extractfile(member)
                if file is not None:
                    found[wanted[member.name]] = file.read()
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        raise DownloadError(f"{PACKAGE} has no dist/{missing[0]}", retryable=False)
    return found
