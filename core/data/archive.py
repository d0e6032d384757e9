"""Extracting a zip archive that came from somewhere we do not control.

``safe_extract_zip`` checks the whole archive before it writes a byte: every
member's CRC (a damaged download), every name (no absolute paths, no ``..``
escaping the destination, no symlinks) and the total size (zip bombs; the
declared sizes first, then the bytes actually written, since headers can lie).
It extracts into a hidden sibling folder and renames that into place only when
everything is out, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

from core.data.download import format_size
from core.data.layout import is_junk  # noqa: F401 (re-exported: older code imports it from here)

ZipSource = Union[str, os.PathLike, BinaryIO]
# (uncompressed bytes written so far, total uncompressed bytes declared)
ExtractProgress = Callable[[int, int], None]

# Bytes read from a member at a time while extracting.
_CHUNK = 1 << 20
# More entries than any photo dataset has; a zip claiming more is a bomb.
MAX_MEMBERS = 1_000_000
# Bit 0 of a zip entry's general-purpose flags: the entry is encrypted.
_ENCRYPTED_FLAG = 0x1


class ArchiveError(ValueError):
    """An archive that cannot be used; the message is meant for a person."""


class UnsafeArchiveError(ArchiveError):
    """An archive that tries to write outside its folder or to be too large."""


def safe_extract_zip(
    source: ZipSource,
    dest: Path,
    *,
    max_bytes: int,
    max_members: int = MAX_MEMBERS,
    progress: Optional[ExtractProgress] = None,
) -> Path:
    """Extract the zip at `source` (path or seekable file) into the new folder `dest`.

    Raises `UnsafeArchiveError` for a dangerous archive, `ArchiveError` for one
    that is damaged, empty or not a zip, and `FileExistsError` when `dest`
    exists already. On any error `dest` is not created.
    """
    dest = Path(dest)
    label = _label(source)
    if dest.exists():
        raise FileExistsError(f"Cannot extract {label}: {dest} already exists.")
    if hasattr(source, "seek"):
        source.seek(0)  # an uploaded file may have been read already

    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise ArchiveError(
            f"{label} is not a zip archive, or it is damaged (for example an "
            "incomplete download)."
        ) from error

    with archive:
        members = _checked_members(archive, label, max_bytes, max_members)
        _test_crc(archive, label)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
        try:
            _extract(archive, members, staging, label, max_bytes, progress)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


def _checked_members(
    archive: zipfile.ZipFile, label: str, max_bytes: int, max_members: int
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to extract with their path parts, or the first problem found."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(
            f"{label} holds {len(infos):,} entries, more than the {max_members:,} allowed."
        )
    members = []
    declared = 0
    for info in infos:
        name = info.filename
        posix = name.replace("\\", "/")
        first = posix.split("/", 1)[0]
        if posix.startswith("/") or first.endswith(":"):
            raise UnsafeArchiveError(
                f"{label} is refused: member {name!r} has an absolute path."
            )
        parts = tuple(p for p in posix.split("/") if p not in ("", "."))
        if ".." in parts:
            raise UnsafeArchiveError(
                f"{label} is refused: member {name!r} points outside the "
                "extraction folder ('..' in its path)."
            )
        if is_junk(name):  # after the path checks: a junk name does not excuse '..'
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                f"{label} is refused: member {name!r} is a symbolic link."
            )
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise ArchiveError(
                f"{label} is password-protected ({name!r}); upload an unencrypted zip."
            )
        if not parts:
            continue
        declared += info.file_size
        if declared > max_bytes:
            raise UnsafeArchiveError(
                f"{label} is refused: it would expand to more than "
                f"{format_size(max_bytes)}, the limit for extracted data."
            )
        members.append((info, parts))
    if not any(not info.is_dir() for info, _ in members):
        raise ArchiveError(f"{label} contains no files.")
    return members


def _test_crc(archive: zipfile.ZipFile, label: str) -> None:
    try:
        bad_member = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ArchiveError(f"{label} is damaged: {error}.") from error
    except NotImplementedError as error:
        raise ArchiveError(
            f"{label} uses a compression method PawLab cannot read ({error})."
        ) from error
    if bad_member is not None:
        raise ArchiveError(
            f"{label} is damaged: {bad_member!r} fails its checksum (an incomplete "
            "or corrupted file)."
        )


def _extract(
    archive: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
    staging: Path,
    label: str,
    max_bytes: int,
    progress: Optional[ExtractProgress],
) -> None:
    total_declared = sum(info.file_size for info, _ in members)
    written = 0
    if progress:
        progress(0, total_declared)
    for info, parts in members:
        target = staging.joinpath(*parts)
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    # Headers can understate sizes; count what really comes out.
                    if written > max_bytes:
                        raise UnsafeArchiveError(
                            f"{label} is refused: it expands to more than "
                            f"{format_size(max_bytes)}, the limit for extracted data."
                        )
                    out.write(chunk)
                    if progress:
                        progress(written, max(total_declared, written))
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise ArchiveError(f"{label} is damaged at {info.filename!r}: {error}.") from error
        except OSError as error:
            raise ArchiveError(
                f"Could not extract {info.filename!r} from {label}: "
                f"{error.strerror or error}."
            ) from error


def _label(source: ZipSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"The file {Path(source).name!r}"
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return f"The file {Path(name).name!r}"
    return "The archive"
