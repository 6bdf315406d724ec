"""A zip archive written entry by entry, with the sha256 and size of every file taken while writing.

Each large entry is streamed through `ZipFile.open(name, "w")` (ZIP_DEFLATED), so nothing is
held whole in memory; a small one (bytes in memory, up to 1 MiB: a `.npy` of one cell, a mask
PNG) is deflated in one call and written with its header complete, which costs a fraction of
opening a zip entry (`StreamingZipFile.write_small`); the list of (name, sha256, bytes) goes to a spool file on disk, not a list, and
is read back once to write the manifest; zipfile's own per-entry list (the central directory,
written at close) is spooled to disk as well, so memory does not grow with the entry count.

Entry names pass through `safe_entry_name`: names built from user text (a data set called
`../x`) never climb out of the folder the archive is unpacked into.
"""

from __future__ import annotations

import hashlib
import io
import json
import marshal
import re
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from studies.core.exports.npy import write_npy, write_object_npy

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# anything the rules below would change: a control character, a backslash or colon, an empty,
# "." or ".." segment, a segment with space at either end (str.strip); else the name is safe
_MAYBE_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\:]|(?:^|/)\.{0,2}(?:/|$)|(?:^|/)\s|\s(?:/|$)")


def safe_entry_name(name: str) -> str:
    """A zip entry name that stays inside the folder it is unpacked into: separators are "/",
    no empty, "." or ".." segment, no control character, no drive ("C:"); ordinary names are
    returned unchanged."""
    if not _MAYBE_UNSAFE.search(name):  # the common case, decided in one scan
        return name
    parts = []
    for part in re.split(r"[/\\]", _CONTROL.sub("_", name)):
        part = part.strip()
        if part in ("", ".", ".."):
            continue
        parts.append(part.replace(":", "_") if not parts else part)
    if not parts:
        raise ValueError(f"export entry name {name!r} has nothing left once made safe")
    return "/".join(parts)


# the ZipInfo fields the central directory is written from (zipfile._write_end_record)
_INFO_FIELDS = (
    "orig_filename", "date_time", "compress_type", "flag_bits", "external_attr", "internal_attr",
    "create_system", "create_version", "extract_version", "reserved", "CRC", "compress_size",
    "file_size", "header_offset", "extra", "comment",
)  # fmt: skip


class SpooledFileList:
    """ZipFile.filelist kept on disk: zipfile appends each finished entry's ZipInfo and reads
    them all back once, to write the central directory at close. In memory, a 300,000-entry
    archive's ZipInfo list alone would take hundreds of MB. Each entry is spooled as a marshal
    record of the fields the central directory needs (a pickle of a ZipInfo cost several times
    as much, at 1.5 million entries tens of seconds)."""

    def __init__(self):
        self.spool = tempfile.TemporaryFile()
        self.count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        record = marshal.dumps(tuple([getattr(info, f) for f in _INFO_FIELDS]))
        self.spool.write(len(record).to_bytes(4, "little") + record)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        self.spool.flush()
        self.spool.seek(0)
        reader = io.BufferedReader(_Unclosed(self.spool), buffer_size=1 << 20)
        for _ in range(self.count):
            size = int.from_bytes(reader.read(4), "little")
            fields = marshal.loads(reader.read(size))  # our own spool file, written above
            info = zipfile.ZipInfo(fields[0], fields[1])
            for name, value in zip(_INFO_FIELDS[2:], fields[2:], strict=True):
                setattr(info, name, value)
            yield info
        self.spool.seek(0, io.SEEK_END)

    def close(self) -> None:
        self.spool.close()


class _Unclosed(io.RawIOBase):
    """A read view of an open file that leaves it open (for a buffered reader over it)."""

    def __init__(self, file):
        self.file = file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.file.readinto(buffer)


class ForgetfulNames(dict):
    """ZipFile.NameToInfo that keeps no entries (a write-only archive never looks names up)."""

    def __setitem__(self, key, value) -> None:
        pass


class StreamingZipFile(zipfile.ZipFile):
    """A write-only ZipFile whose per-entry bookkeeping lives on disk, not in memory."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filelist = SpooledFileList()
        self.NameToInfo = ForgetfulNames()

    def write_small(
        self, name: str, data: bytes, crc: int, compressed: bytes, stored: bool = False
    ) -> None:
        """One deflated entry whose bytes are all known (no zip64: under 2 GiB): the header is
        written once with its sizes and CRC, where `open(name, "w")` writes it, seeks back to
        rewrite it and seeks forward again. The same entry as `open` writes for a seekable
        file: same flags, permissions, time and fields."""
        if self._writing:
            raise ValueError("another entry of the zip is open for writing")
        info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_STORED if stored else self.compression
        info._compresslevel = None if stored else self.compresslevel
        info.external_attr = 0o600 << 16
        info.flag_bits = 0
        info.file_size = len(data)
        info.compress_size = len(compressed)
        info.CRC = crc
        info.header_offset = self.start_dir  # where every finished entry leaves the file
        header = info.FileHeader(False)
        self.fp.write(header)
        self.fp.write(compressed)
        self._didModify = True
        self.filelist.append(info)
        self.start_dir += len(header) + len(compressed)


class HashingWriter(io.RawIOBase):
    """A binary sink that hashes and counts what passes through to the zip entry."""

    def __init__(self, target: IO[bytes]):
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.target.write(view)
        self.size += view.nbytes
        return view.nbytes


# entries up to this size are deflated in one call and written with their header complete
SMALL_ENTRY = 1 << 20
# payloads up to this size are remembered (deflated bytes, CRC, sha256): the many identical
# small files of an export (the empty arrays of every cell never scored) are compressed once
REPEATED_ENTRY = 1024
REPEATED_KEEP = 4096


class ExportArchive:
    """Write a zip file entry by entry; remember each entry's sha256 on disk."""

    def __init__(self, path: str | Path, *, compresslevel: int = 6):
        self.path = Path(path)
        self.zip = StreamingZipFile(
            self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        )
        self.compresslevel = compresslevel
        self._spool = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._repeated: dict[bytes, tuple[int, bytes, str]] = {}
        self.count = 0
        self.total_bytes = 0

    @contextmanager
    def open(self, name: str, *, large: bool = False) -> Iterator[HashingWriter]:
        """Open one entry for writing; `large` allows entries over 2 GiB (zip64)."""
        name = safe_entry_name(name)
        with self.zip.open(name, "w", force_zip64=large) as entry:
            writer = HashingWriter(entry)
            yield writer
        self._spool.write(json.dumps([name, writer.digest.hexdigest(), writer.size]) + "\n")
        self.count += 1
        self.total_bytes += writer.size

    def write_bytes(self, name: str, data: bytes, *, compress: bool = True) -> None:
        """One entry from bytes in memory (an entry over SMALL_ENTRY is streamed). `compress`
        false: stored as it is (for data that is compressed already, such as a PNG)."""
        if not compress and len(data) <= SMALL_ENTRY:
            name = safe_entry_name(name)
            self.zip.write_small(name, data, zlib.crc32(data), data, stored=True)
            self._spool.write(
                json.dumps([name, hashlib.sha256(data).hexdigest(), len(data)]) + "\n"
            )
            self.count += 1
            self.total_bytes += len(data)
            return
        if len(data) > SMALL_ENTRY:
            with self.open(name) as out:
                out.write(data)
            return
        name = safe_entry_name(name)
        known = self._repeated.get(data) if len(data) <= REPEATED_ENTRY else None
        if known is None:
            packer = zlib.compressobj(self.compresslevel, zlib.DEFLATED, -15)
            known = (
                zlib.crc32(data),
                packer.compress(data) + packer.flush(),
                hashlib.sha256(data).hexdigest(),
            )
            if len(data) <= REPEATED_ENTRY and len(self._repeated) < REPEATED_KEEP:
                self._repeated[bytes(data)] = known
        crc, compressed, sha = known
        self.zip.write_small(name, data, crc, compressed)
        self._spool.write(json.dumps([name, sha, len(data)]) + "\n")
        self.count += 1
        self.total_bytes += len(data)

    def write_npy(self, name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        write_npy(buffer, array)
        self.write_bytes(name, buffer.getvalue())

    def write_object_npy(self, name: str, length: int, items) -> None:
        """A 1-D object array of `length` elements taken one by one from `items` (streamed)."""
        with self.open(name, large=True) as out:
            write_object_npy(out, length, items)

    @contextmanager
    def open_text(self, name: str) -> Iterator[io.TextIOWrapper]:
        with self.open(name, large=True) as out:
            text = io.TextIOWrapper(
                io.BufferedWriter(out, buffer_size=1 << 16), encoding="utf-8", newline=""
            )
            try:
                yield text
            finally:
                text.flush()
                text.detach().flush()

    def files(self) -> Iterator[tuple[str, str, int]]:
        """(name, sha256, bytes) of every entry written so far, in order."""
        self._spool.flush()
        self._spool.seek(0)
        for line in self._spool:
            name, sha, size = json.loads(line)
            yield name, sha, size
        self._spool.seek(0, io.SEEK_END)

    def close(self) -> None:
        self.zip.close()
        self.zip.filelist.close()
        self._spool.close()
