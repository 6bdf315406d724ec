"""A zip archive written entry by entry, with the sha256 and size of every file taken while writing.

Each entry is streamed through `ZipFile.open(name, "w")` (ZIP_DEFLATED), so nothing is held
whole in memory; the list of (name, sha256, bytes) goes to a spool file on disk, not a list, and
is read back once to write the manifest; zipfile's own per-entry list (the central directory,
written at close) is spooled to disk as well, so memory does not grow with the entry count.

Entry names pass through `safe_entry_name`: names built from user text (a data set called
`../x`) never climb out of the folder the archive is unpacked into.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from studies.core.exports.npy import write_npy, write_object_npy

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_entry_name(name: str) -> str:
    """A zip entry name that stays inside the folder it is unpacked into: separators are "/",
    no empty, "." or ".." segment, no control character, no drive ("C:"); ordinary names are
    returned unchanged."""
    parts = []
    for part in re.split(r"[/\\]", _CONTROL.sub("_", name)):
        part = part.strip()
        if part in ("", ".", ".."):
            continue
        parts.append(part.replace(":", "_") if not parts else part)
    if not parts:
        raise ValueError(f"export entry name {name!r} has nothing left once made safe")
    return "/".join(parts)


class SpooledFileList:
    """ZipFile.filelist kept on disk: zipfile appends each finished entry's ZipInfo and reads
    them all back once, to write the central directory at close. In memory, a 300,000-entry
    archive's ZipInfo list alone would take hundreds of MB."""

    def __init__(self):
        self.spool = tempfile.TemporaryFile()
        self.count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        pickle.dump(info, self.spool, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        self.spool.flush()
        self.spool.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.spool)  # our own spool file, written above
        self.spool.seek(0, io.SEEK_END)

    def close(self) -> None:
        self.spool.close()


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


class ExportArchive:
    """Write a zip file entry by entry; remember each entry's sha256 on disk."""

    def __init__(self, path: str | Path, *, compresslevel: int = 6):
        self.path = Path(path)
        self.zip = StreamingZipFile(
            self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        )
        self._spool = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
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

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as out:
            out.write(data)

    def write_npy(self, name: str, array: np.ndarray) -> None:
        with self.open(name) as out:
            write_npy(out, array)

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
