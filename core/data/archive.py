"""Extracting a zip archive that came from somewhere we do not control.

``safe_extract_zip`` checks the whole archive before it writes a byte, from
its headers alone, so a bomb costs no decompression:

1. the entry count, read from the end record and the central directory
   before ``zipfile`` parses it (a million tiny entries);
2. every name: no absolute paths, no ``..`` escaping the destination, no
   symlinks, no name twice;
3. where every entry's bytes lie: entries that share bytes are the classic
   zip-bomb construction, and a well-formed zip never has them;
4. sizes: every entry, junk included, counts against the size cap, and no
   entry (nor the whole) may compress better than ``max_ratio``:1.

Checksums are checked while the kept entries are written, and the bytes that
really come out are counted (headers can lie). Extraction goes into a hidden
sibling folder that is renamed into place only when everything is out, so a
failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.data.download import format_size
from core.data.layout import is_junk_name

ZipSource = str | os.PathLike | BinaryIO
# (uncompressed bytes written so far, total uncompressed bytes declared)
ExtractProgress = Callable[[int, int], None]
Member = tuple[zipfile.ZipInfo, tuple[str, ...]]  # an entry to extract and its path parts

# Bytes read from a member at a time while extracting.
_CHUNK = 1 << 20
# More entries than a photo dataset needs (core.config's max_zip_entries default).
MAX_MEMBERS = 100_000
# Uncompressed:compressed bytes; JPEGs barely compress, text about 5:1.
MAX_COMPRESSION_RATIO = 200
# Below this many uncompressed bytes an entry's ratio is not checked: a small
# file of blanks compresses well and harms nobody. The whole archive's is.
RATIO_CHECKED_FROM_BYTES = 1 << 20
# Bit 0 of a zip entry's general-purpose flags: the entry is encrypted.
_ENCRYPTED_FLAG = 0x1

# The zip format's records (APPNOTE.TXT), little-endian.
_END_RECORD = struct.Struct("<4s4H2LH")  # sig, disks, entries here, entries, size, offset, comment
_END_SIGNATURE = b"PK\x05\x06"
_MAX_COMMENT = 0xFFFF
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # sig, disk, offset of the zip64 end record, disks
# sig, record size, versions, disks, entries here, entries, directory size, offset
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_CENTRAL_RECORD = struct.Struct("<4s6H3L5H2L")  # 46 bytes, then name, extra, comment
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes, then name, extra, data
_LOCAL_SIGNATURE = b"PK\x03\x04"


class ArchiveError(ValueError):
    """An archive that cannot be used; the message is meant for a person."""


class UnsafeArchiveError(ArchiveError):
    """An archive that tries to write outside its folder or to be too large."""


@dataclass(frozen=True)
class _Directory:
    """Where the central directory is, as the end record says."""

    entries: int  # as declared; the directory itself may hold more
    start: int  # file offset of the first central record
    size: int


def safe_extract_zip(
    source: ZipSource,
    dest: Path,
    *,
    max_bytes: int,
    max_members: int = MAX_MEMBERS,
    max_ratio: int = MAX_COMPRESSION_RATIO,
    room: int | None = None,
    progress: ExtractProgress | None = None,
) -> Path:
    """Extract the zip at `source` (path or seekable file) into the new folder `dest`.

    `room`: bytes the destination may still take (a disk quota), if any.
    Raises `UnsafeArchiveError` for a dangerous archive, `ArchiveError` for one
    that is damaged, empty, not a zip or too big for `room`, `FileExistsError`
    when `dest` exists already, and `OSError` when `dest` cannot be written.
    On any error `dest` is not created.
    """
    dest = Path(dest)
    label = _label(source)
    if dest.exists():
        raise FileExistsError(f"Cannot extract {label}: {dest} already exists.")
    with ExitStack() as stack:
        file = _open_source(source, stack)
        _check_entry_count(file, label, max_members)  # before zipfile parses anything
        archive = stack.enter_context(_open_zip(file, label))
        members = _checked_members(archive, label, max_bytes, max_members)
        _check_no_overlap(archive, file, label)
        _check_ratio(archive.infolist(), label, max_ratio)
        limit = _Limit(max_bytes, room, label)
        limit.check(sum(info.file_size for info, _ in members))
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
        try:
            _extract(archive, members, staging, label, limit, progress)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


@dataclass(frozen=True)
class ZipMember:
    """One entry ``safe_extract_zip`` would write, as the central directory declares it."""

    parts: tuple[str, ...]  # its path inside the extraction folder
    size: int  # declared uncompressed bytes; zipfile never writes more than this
    is_dir: bool


@dataclass(frozen=True)
class ZipContents:
    label: str  # "The file 'photos.zip'", for messages
    members: list[ZipMember]


def zip_contents(source: ZipSource, *, max_bytes: int, max_members: int = MAX_MEMBERS) -> ZipContents:
    """What ``safe_extract_zip`` would write (junk left out), read from the zip's headers alone.

    Nothing is decompressed or written: a caller with caps of its own (files,
    disk blocks) refuses a zip from this before extracting it. The entry
    count, names and declared sizes are refused as ``safe_extract_zip`` does.
    """
    label = _label(source)
    with ExitStack() as stack:
        file = _open_source(source, stack)
        _check_entry_count(file, label, max_members)  # before zipfile parses anything
        archive = stack.enter_context(_open_zip(file, label))
        members = _checked_members(archive, label, max_bytes, max_members)
    return ZipContents(label, [ZipMember(parts, info.file_size, info.is_dir()) for info, parts in members])


# --- Reading the headers ----------------------------------------------------------


def _open_source(source: ZipSource, stack: ExitStack) -> BinaryIO:
    if isinstance(source, (str, os.PathLike)):
        return stack.enter_context(open(source, "rb"))
    source.seek(0)  # an uploaded file may have been read already
    return source


def _not_a_zip(label: str) -> ArchiveError:
    return ArchiveError(f"{label} is not a zip archive, or it is damaged (for example an incomplete download).")


def _open_zip(file: BinaryIO, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(file)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise _not_a_zip(label) from error


def _find_directory(file: BinaryIO, label: str) -> _Directory:
    """Read the end record (and its zip64 twin) at the end of the file."""
    length = file.seek(0, os.SEEK_END)
    tail_start = max(0, length - _END_RECORD.size - _MAX_COMMENT)
    file.seek(tail_start)
    tail = file.read()
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise _not_a_zip(label)
    *_, entries, size, offset, _comment = _END_RECORD.unpack_from(tail, at)
    end = tail_start + at  # the directory ends where the end records begin
    if entries == 0xFFFF or size == 0xFFFFFFFF or offset == 0xFFFFFFFF:
        zip64_at = end - _ZIP64_LOCATOR.size - _ZIP64_END.size
        if zip64_at < 0:
            raise _not_a_zip(label)
        file.seek(zip64_at)
        record = file.read(_ZIP64_END.size)
        if len(record) < _ZIP64_END.size or not record.startswith(_ZIP64_END_SIGNATURE):
            raise _not_a_zip(label)
        *_, entries, size, _offset = _ZIP64_END.unpack(record)
        end = zip64_at
    if size > end:
        raise _not_a_zip(label)
    return _Directory(entries=entries, start=end - size, size=size)


def _count_central_records(file: BinaryIO, directory: _Directory, stop_after: int) -> int:
    """Walk the central directory record by record, stopping past `stop_after`."""
    file.seek(directory.start)
    count = walked = 0
    while walked < directory.size and count <= stop_after:
        record = file.read(_CENTRAL_RECORD.size)
        if len(record) < _CENTRAL_RECORD.size or not record.startswith(_CENTRAL_SIGNATURE):
            break  # zipfile reports the damage in its own words
        name_len, extra_len, comment_len = _CENTRAL_RECORD.unpack(record)[10:13]
        file.seek(name_len + extra_len + comment_len, os.SEEK_CUR)
        walked += _CENTRAL_RECORD.size + name_len + extra_len + comment_len
        count += 1
    return count


def _check_entry_count(file: BinaryIO, label: str, max_members: int) -> None:
    """Refuse too many entries, junk included, as the end record declares or the
    directory really holds (zipfile trusts the directory's size, not the count)."""
    directory = _find_directory(file, label)
    count = directory.entries
    if count <= max_members:
        count = _count_central_records(file, directory, stop_after=max_members)
    if count > max_members:
        raise UnsafeArchiveError(f"{label} holds {count:,} entries, more than the {max_members:,} allowed.")


def _check_no_overlap(archive: zipfile.ZipFile, file: BinaryIO, label: str) -> None:
    """Refuse entries whose local header and data share bytes with another's."""
    spans = sorted((_span(file, info, label), info.filename) for info in archive.infolist())
    previous_end, previous_name = 0, None
    for (start, end), name in spans:
        if start < previous_end:
            raise UnsafeArchiveError(
                f"{label} is refused: entries {previous_name!r} and {name!r} overlap "
                "(they share bytes, the way zip bombs are built)."
            )
        if end > previous_end:
            previous_end, previous_name = end, name


def _span(file: BinaryIO, info: zipfile.ZipInfo, label: str) -> tuple[int, int]:
    """The bytes of `info`'s local header and data: [start, end)."""
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or not header.startswith(_LOCAL_SIGNATURE):
        raise ArchiveError(f"{label} is damaged: the entry {info.filename!r} is missing.")
    name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
    data_start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    return info.header_offset, data_start + info.compress_size


def _check_ratio(infos: list[zipfile.ZipInfo], label: str, max_ratio: int) -> None:
    """Refuse an entry, or an archive, that compresses better than `max_ratio`:1."""
    for info in infos:
        _refuse_ratio(
            info.file_size, info.compress_size, max_ratio, f"{label} is refused: {info.filename!r} compresses"
        )
    _refuse_ratio(
        sum(info.file_size for info in infos),
        sum(info.compress_size for info in infos),
        max_ratio,
        f"{label} is refused: it compresses",
    )


def _refuse_ratio(uncompressed: int, compressed: int, max_ratio: int, what: str) -> None:
    if uncompressed < RATIO_CHECKED_FROM_BYTES:
        return
    ratio = uncompressed / max(compressed, 1)
    if ratio > max_ratio:
        raise UnsafeArchiveError(
            f"{what} {ratio:,.0f}:1, more than the {max_ratio}:1 allowed (photos barely compress; this is a zip bomb)."
        )


def _checked_members(archive: zipfile.ZipFile, label: str, max_bytes: int, max_members: int) -> list[Member]:
    """The members to extract with their path parts, or the first problem found."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(f"{label} holds {len(infos):,} entries, more than the {max_members:,} allowed.")
    members: list[Member] = []
    seen: set[object] = set()  # names and path parts
    declared = 0
    for info in infos:
        parts = _checked_parts(info, label)
        if info.filename in seen or (parts and parts in seen):
            raise UnsafeArchiveError(f"{label} is refused: it holds {info.filename!r} twice.")
        seen.update((info.filename, parts))
        declared += info.file_size  # junk too: every entry counts against the cap
        if declared > max_bytes:
            raise UnsafeArchiveError(
                f"{label} is refused: it would expand to more than "
                f"{format_size(max_bytes)}, the limit for extracted data."
            )
        if parts and not _is_junk(parts):
            members.append((info, parts))
    if not any(not info.is_dir() for info, _ in members):
        raise ArchiveError(f"{label} contains no files.")
    return members


def _checked_parts(info: zipfile.ZipInfo, label: str) -> tuple[str, ...]:
    """The entry's path parts, after refusing escapes, links and encryption."""
    name = info.filename
    posix = name.replace("\\", "/")
    first = posix.split("/", 1)[0]
    if posix.startswith("/") or first.endswith(":"):
        raise UnsafeArchiveError(f"{label} is refused: member {name!r} has an absolute path.")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{label} is refused: member {name!r} points outside the extraction folder ('..' in its path)."
        )
    if _is_junk(parts):  # after the path checks: a junk name does not excuse '..'
        return parts
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"{label} is refused: member {name!r} is a symbolic link.")
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise ArchiveError(f"{label} is password-protected ({name!r}); upload an unencrypted zip.")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    """core.data.layout.is_junk on parts already split: a zip of 100k entries is checked in a
    second, not in several spent building a PurePosixPath per name."""
    return any(is_junk_name(part) for part in parts)


# --- Writing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limit:
    """The most bytes extraction may write: the size cap, or the quota's room if smaller."""

    max_bytes: int
    room: int | None
    label: str

    def check(self, total: int) -> None:
        if total > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.label} is refused: it expands to more than "
                f"{format_size(self.max_bytes)}, the limit for extracted data."
            )
        if self.room is not None and total > self.room:
            raise ArchiveError(
                f"There is no room for {self.label[0].lower()}{self.label[1:]}: it needs "
                f"more than the {format_size(max(self.room, 0))} left of the space for "
                "datasets (PAWLAB_MAX_DATASETS_BYTES); delete a dataset or ask the operator."
            )


def _extract(
    archive: zipfile.ZipFile,
    members: list[Member],
    staging: Path,
    label: str,
    limit: _Limit,
    progress: ExtractProgress | None,
) -> None:
    """Write the members; a failed write is left to the caller as the OSError it is."""
    total_declared = sum(info.file_size for info, _ in members)
    written = 0
    if progress:
        progress(0, total_declared)
    for info, parts in members:
        target = staging.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with _reading(archive, info, label) as src, open(target, "wb") as out:
            while chunk := _read(src, info, label):
                written += len(chunk)
                limit.check(written)  # headers can understate sizes: count what comes out
                out.write(chunk)
                if progress:
                    progress(written, max(total_declared, written))


def _reading(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str):
    try:
        return archive.open(info)
    except NotImplementedError as error:
        raise ArchiveError(f"{label} uses a compression method PawLab cannot read ({error}).") from error
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ArchiveError(f"{label} is damaged at {info.filename!r}: {error}.") from error


def _read(src, info: zipfile.ZipInfo, label: str) -> bytes:
    """The next chunk of an entry; zipfile checks its CRC when the entry ends."""
    try:
        return src.read(_CHUNK)
    except zipfile.BadZipFile as error:
        if "CRC" in str(error):
            raise ArchiveError(
                f"{label} is damaged: {info.filename!r} fails its checksum (an incomplete or corrupted file)."
            ) from error
        raise ArchiveError(f"{label} is damaged at {info.filename!r}: {error}.") from error
    except (zlib.error, EOFError, OSError) as error:
        raise ArchiveError(f"{label} is damaged at {info.filename!r}: {error}.") from error


def _label(source: ZipSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"The file {Path(source).name!r}"
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return f"The file {Path(name).name!r}"
    return "The archive"
