"""Downloading one file over HTTP(S), all or nothing.

The bytes stream into a uniquely named ``.<dest>.*.part`` file next to the
destination (so two downloads of one file never write into each other) and
are renamed into place only once their count matches what the server announced (and what
the caller expected). A dropped connection, a short body or an HTTP error
removes the partial file and raises ``DownloadError`` with a sentence a person
can act on, so a later call starts from a clean slate. A folder that cannot be
written (read-only, full) is the machine's fault, not the network's: it is
said once, "PawLab cannot write to /path (read-only file system).", and not
retried.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core.fileio import cannot_write_message

# (bytes downloaded so far, total bytes or None when the server does not say)
ProgressCallback = Callable[[int, int | None], None]

USER_AGENT = "PawLab/1.0 (Python urllib)"
# Seconds to wait before retry n is `RETRY_WAIT_S * n`; tests set it to 0.
RETRY_WAIT_S = 1.0
# Bytes read from the connection at a time.
CHUNK_BYTES = 1 << 20
# HTTP statuses worth retrying besides 5xx: request timeout, too many requests.
RETRYABLE_STATUSES = (408, 429)


class DownloadError(Exception):
    """A download that did not complete; the message is meant for a person."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        # Server errors and dropped connections may go away; a 404 will not.
        self.retryable = retryable


@contextlib.contextmanager
def _writing_to(folder: Path):
    """Any OSError inside is a failed write to `folder`: a DownloadError not worth retrying."""
    try:
        yield
    except OSError as error:
        raise DownloadError(cannot_write_message(folder, error), retryable=False) from error


def format_size(num_bytes: int | None) -> str:
    """`3_100_000` -> "3.1 MB" (decimal units, like browsers show)."""
    if num_bytes is None:
        return "an unknown size"
    if num_bytes < 1000:
        return f"{num_bytes} bytes"
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if num_bytes < scale * 1000 or unit == "GB":
            return f"{num_bytes / scale:.1f} {unit}"
    raise AssertionError("unreachable")


def download_file(
    url: str,
    dest: Path,
    *,
    progress: ProgressCallback | None = None,
    expected_size: int | None = None,
    timeout: float = 30,
    chunk_size: int = CHUNK_BYTES,
    retries: int = 2,
) -> Path:
    """Download `url` to `dest` atomically and return `dest`.

    `progress(downloaded, total)` is called once when the response starts and
    after every chunk; `total` is the Content-Length (or `expected_size`) or
    None. When a retry restarts the download, `downloaded` starts again at 0.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(
            f"Cannot download {url!r}: only http:// and https:// addresses are supported.",
            retryable=False,
        )
    with _writing_to(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)

    for attempt in range(retries + 1):
        try:
            return _download_once(
                url,
                dest,
                progress=progress,
                expected_size=expected_size,
                timeout=timeout,
                chunk_size=chunk_size,
            )
        except DownloadError as error:
            if not error.retryable or attempt == retries:
                raise
            time.sleep(RETRY_WAIT_S * (attempt + 1))
    raise AssertionError("unreachable")


def _download_once(
    url: str,
    dest: Path,
    *,
    progress: ProgressCallback | None,
    expected_size: int | None,
    timeout: float,
    chunk_size: int,
) -> Path:
    part: Path | None = None
    downloaded = 0
    total: int | None = expected_size
    completed = False
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310 -- http(s) only, checked in download_file
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            total = _announced_total(response, url, expected_size)
            if progress:
                progress(0, total)
            with _writing_to(dest.parent):
                part, out = _new_part_file(dest)
            with out:
                while chunk := response.read(chunk_size):
                    with _writing_to(dest.parent):
                        out.write(chunk)
                    downloaded += len(chunk)
                    if total is not None and downloaded > total:
                        raise DownloadError(
                            f"Download of {url} failed: the server sent more than the announced {format_size(total)}."
                        )
                    if progress:
                        progress(downloaded, total)
                with _writing_to(dest.parent):
                    out.flush()
                    os.fsync(out.fileno())
        # http.client returns a short body without complaint when the
        # connection closes early, so the byte count is the real check.
        if total is not None and downloaded != total:
            raise DownloadError(
                f"Download of {url} failed: the connection dropped after "
                f"{format_size(downloaded)} of {format_size(total)}."
            )
        with _writing_to(dest.parent):
            os.replace(part, dest)
        completed = True
        return dest
    except DownloadError:
        raise
    except urllib.error.HTTPError as error:
        raise DownloadError(
            f"Download of {url} failed: the server answered {error.code} {error.reason}.",
            retryable=error.code >= 500 or error.code in RETRYABLE_STATUSES,
        ) from error
    except urllib.error.URLError as error:
        raise DownloadError(f"Could not reach {url}: {_reason(error.reason)}.") from error
    except TimeoutError as error:
        raise DownloadError(
            f"Download of {url} failed: the server stopped responding for "
            f"{timeout:g} s after {format_size(downloaded)} of {format_size(total)}."
        ) from error
    except (http.client.HTTPException, ConnectionError) as error:
        raise DownloadError(
            f"Download of {url} failed: the connection dropped after "
            f"{format_size(downloaded)} of {format_size(total)} ({_reason(error)})."
        ) from error
    except OSError as error:
        raise DownloadError(f"Download of {url} failed after {format_size(downloaded)}: {_reason(error)}.") from error
    finally:
        if part is not None and not completed:
            part.unlink(missing_ok=True)


def _new_part_file(dest: Path):
    """An empty, uniquely named file next to ``dest`` and the open file to write it."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.chmod(name, 0o644)  # mkstemp makes it private; the finished file should not be
    return Path(name), os.fdopen(fd, "wb")


def _announced_total(response, url: str, expected_size: int | None) -> int | None:
    """The size the server announces (Content-Length), checked against the caller's."""
    content_length = _content_length(response)
    if content_length is None:
        return expected_size
    if expected_size is not None and content_length != expected_size:
        raise DownloadError(
            f"Download of {url} refused: the server offers "
            f"{format_size(content_length)} but {format_size(expected_size)} "
            "was expected, so it is probably a different file.",
            retryable=False,
        )
    return content_length


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None


def _reason(error) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
