"""Files that several processes share: written whole, read with care, locked.

Every PawLab file that a reader may see while a writer replaces it (run
status, scan caches, the workspace, augmentation configs, caches of counts
and features) goes through this module:

    write_json(path, data)         # readers see the old file or the new one, never half
    record = read_json(path)       # JsonRead(value, problem): damage is reported, not raised
    append_line(path, text)        # one whole line or nothing, even on a full disk
    with FileLock(path, timeout=10):
        ...                        # one process at a time; LockTimeout after `timeout` s

Writes go to a uniquely named temp file in the same folder, are flushed to
disk (fsync), then renamed over the target: two writers at once each replace
the file whole, and a crash leaves the old file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

# How long a lock waits by default before giving up with a message (seconds).
LOCK_TIMEOUT_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.05


# --- Why a folder cannot take a file, in words ------------------------------------


class CannotWrite(NamedTuple):
    reason: str  # in "PawLab cannot write to /path (<reason>)." (core)
    page: str  # in "Could not <action>: <page> (`/path`)." (pages/_common/errors.py)


# The one table of failed-write sentences, by errno. Other OSErrors (a name taken,
# a lock busy) keep their own message.
CANNOT_WRITE = {
    errno.EROFS: CannotWrite("read-only file system", "the folder PawLab writes to is read-only"),
    errno.ENOSPC: CannotWrite("the disk is full", "the disk is full"),
    errno.EDQUOT: CannotWrite("the disk quota is used up", "the disk quota is used up"),
    errno.EACCES: CannotWrite("permission denied", "PawLab is not allowed to write there"),
    errno.EPERM: CannotWrite("permission denied", "PawLab is not allowed to write there"),
}


def cannot_write_reason(error: OSError) -> str:
    """The table's reason for ``error``, else its own words."""
    known = CANNOT_WRITE.get(error.errno) if error.errno is not None else None
    return known.reason if known else (error.strerror or str(error) or type(error).__name__).lower()


def cannot_write_message(folder: str | os.PathLike, error: OSError) -> str:
    """ "PawLab cannot write to /path (the disk is full)." for a failed write."""
    return f"PawLab cannot write to {folder} ({cannot_write_reason(error)})."


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step: a reader sees the old or the new file."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; other readers are welcome
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2))


@dataclass(frozen=True)
class JsonRead:
    """What ``read_json`` found: the value, or a sentence saying why there is none."""

    value: Any = None
    problem: str | None = None  # None: read whole and of the expected type

    @property
    def ok(self) -> bool:
        return self.problem is None


def read_json(path: str | os.PathLike, expect: type | tuple[type, ...] = dict) -> JsonRead:
    """Read a JSON file; a missing, empty, truncated or wrong-typed file is a ``problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return JsonRead(problem=f"{path.name} is missing")
    except (OSError, UnicodeDecodeError) as error:
        return JsonRead(problem=f"{path.name} cannot be read ({error})")
    if not text.strip():
        return JsonRead(problem=f"{path.name} is empty")
    try:
        value = json.loads(text)
    except ValueError:
        return JsonRead(problem=f"{path.name} is damaged (not valid JSON)")
    if not isinstance(value, expect):
        return JsonRead(problem=f"{path.name} is damaged (holds {type(value).__name__})")
    return JsonRead(value)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline as one whole line, or nothing.

    A write that fails part-way (a full disk) is cut back to where the file
    ended, so the next line never glues onto half a line.
    """
    payload = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(errno.ENOSPC, "short write", str(path))
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


class LockTimeout(TimeoutError):
    """Another process held a lock for longer than the caller wanted to wait."""


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if needed), waited for at most ``timeout`` s.

    Locks are per open file, so two threads of one process exclude each other
    as two processes do. A process that dies releases its locks.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = LOCK_TIMEOUT_SECONDS, what: str = "this file"):
        self.path, self.timeout, self.what = Path(path), timeout, what
        self._handle: IO[str] | None = None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise LockTimeout(
                        f"Another PawLab process has been busy with {self.what} for over "
                        f"{self.timeout:g} s; try again in a moment."
                    ) from None
                time.sleep(_LOCK_POLL_SECONDS)
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (photos, exports, downloads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
