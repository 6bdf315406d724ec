"""Importing data sets: PointPrompt `samples.npy` / `labels.npy` pairs and image/mask pairs
matched by file name, from a folder (the command line) or an archive (the web upload).

One code path for both: a *source* lists file names and opens them; `plan_pairs` matches
images to masks; `check_pair_files` / `pointprompt_pairs` read and check each pair, raising
`Refused(reason, detail)`; `import_source` stores the accepted pairs in one transaction and
returns a report (pairs accepted, pairs refused with the reason each). The command-line
importers are strict (any refusal stops the import, nothing stored); the web import keeps the
accepted pairs and reports the refused ones.

Names (the upload page says the same): `images/<name>.<ext>` pairs with `masks/<name>.<ext>`
or `masks/<name>_mask.<ext>`; several objects in one image are several masks
`masks/<name>_1.png`, `masks/<name>_2.png`, ..., each becoming its own data set image.
Masks with two values (0 and one other, e.g. 0/1 or 0/255) take that other value as the object;
masks with more values (JPEG noise, antialiased edges) are binarised at half the range
(>= 128 for 8-bit) and the report warns. What each pair went through (EXIF orientation, a
16-bit window, a mask read from alpha, the working copy's scale) is in its report line and on
its row (`DatasetImage.import_notes`).

Archives are read with caps (`ArchiveLimits`): bytes per member, expansion ratio, and for
compressed tars the declared sizes before anything is inflated; `inspect_archive` is the upload
request's cheap look (type, index, a bounded number of decompressed bytes).
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from studies.core.datasets import create_dataset
from studies.core.safe_npy import load_npy
from studies.models import Dataset

REASONS = (
    "unreadable",
    "format not supported",
    "size mismatch",
    "empty mask",
    "ambiguous mask",
    "over the pixel limit",
    "over the size limit",
    "no mask",
    "no image",
    "duplicate name",
)
MAX_MEMBER_BYTES = 1024**3  # one file inside an archive, uncompressed (npy pairs)
RATIO_FLOOR_BYTES = 32 * 1024**2  # below this a member may expand as much as it likes
MAX_RATIO = 200  # above the floor, uncompressed / compressed bytes
INDEX_LOOK_BYTES = 32 * 1024**2  # the upload request decompresses at most this much of a tar
MAX_MEMBERS = 200_000

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# Image formats people have that Pillow cannot read here (or that we do not take): the pair is
# refused as "format not supported" rather than ignored (which read as "no image").
UNSUPPORTED_SUFFIXES = {".heic", ".heif", ".avif", ".gif", ".jp2", ".jxl", ".svg", ".psd", ".dng"}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
SUPPORTED_WORDS = "use PNG or JPEG; WebP, BMP and TIFF are read too"


def image_member_cap(max_pixels: int) -> int:
    """Bytes one image file may hold: an uncompressed 16-bit RGBA image at the pixel limit."""
    return max(RATIO_FLOOR_BYTES, 8 * max_pixels + 1024**2)


def normalise_image(image: np.ndarray, where: str) -> np.ndarray:
    """PointPrompt images to uint8 H x W x 3, as the collection tool showed them.

    2-D float images in [-1, 1] (seismic) become uint8 grey, then RGB; float images in [0, 1] are
    scaled by 255; grey images are repeated to RGB; RGBA drops alpha.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"{where}: image has shape {image.shape}, expected H x W or H x W x C")
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise ValueError(f"{where}: image has NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low >= -1.0 and high <= 1.0 and low < 0.0:
            image = np.round((image + 1.0) * 127.5)
        elif low >= 0.0 and high <= 1.0:
            image = np.round(image * 255.0)
        elif low < 0.0 or high > 255.0:
            raise ValueError(
                f"{where}: float image values in [{low}, {high}] are not in [-1, 1], [0, 1] or [0, 255]"
            )
        image = image.astype(np.uint8)
    elif image.dtype != np.uint8:
        if image.dtype.kind not in "iub":
            raise ValueError(f"{where}: image values of type {image.dtype} are not numbers")
        if image.min() < 0 or image.max() > 255:
            image, _ = window_to_uint8(image)  # e.g. 16-bit: a stated window, never a clip
        else:
            image = image.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] != 3:
        raise ValueError(f"{where}: image has {image.shape[2]} channels")
    return np.ascontiguousarray(image)


def window_to_uint8(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """Deeper-than-8-bit pixels to uint8 with a linear min-max window (the lowest value -> 0,
    the highest -> 255, over all channels): nothing is clipped. Returns the pixels and the
    window, recorded on the row and stated in the report."""
    values = np.asarray(values)
    low, high = float(values.min()), float(values.max())
    if high > low:
        scaled = (values.astype(np.float32) - low) * np.float32(255.0 / (high - low))
        out = np.rint(scaled).astype(np.uint8)
    else:
        out = np.zeros(values.shape, np.uint8)
    return out, {"window": [low, high], "window_method": "min-max"}


def normalise_label(label: np.ndarray, where: str) -> np.ndarray:
    """Labels to bool H x W: RGB labels use any non-zero channel, values > 0 are the object."""
    label = np.asarray(label)
    if label.ndim == 3:
        label = label.any(axis=2)
    if label.ndim != 2:
        raise ValueError(f"{where}: label has shape {label.shape}, expected H x W")
    if label.dtype.kind == "f" and not np.isfinite(label).all():
        raise ValueError(f"{where}: label has NaN or infinite values")
    return label > 0


class Refused(ValueError):
    """One pair cannot be imported; `reason` is one of REASONS, `detail` says what is wrong."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class ImportReport:
    # {name, index, width, height} (+ file, original_width / _height, notes when there are)
    accepted: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # {name, reason, detail}

    def refuse(self, name: str, exc: Refused) -> None:
        self.refused.append({"name": name, "reason": exc.reason, "detail": exc.detail})

    def as_dict(self) -> dict:
        reasons: dict[str, int] = {}
        for r in self.refused:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        return {
            "accepted": len(self.accepted),
            "refused": len(self.refused),
            "refused_by_reason": reasons,
            "warned": sum(1 for a in self.accepted if a.get("notes")),
            "accepted_pairs": self.accepted,
            "refused_pairs": self.refused,
        }


# ----------------------------------------------------------------------------- sources

DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)


def _read_capped(handle, name: str, cap: int, packed: int | None) -> bytes:
    """Read a member in 1 MiB blocks, stopping (Refused) once it is over `cap` bytes or, past
    RATIO_FLOOR_BYTES, more than MAX_RATIO times its compressed size: a bomb is stopped after
    at most cap + 1 MiB of inflating, whatever its header says."""
    buffer = io.BytesIO()
    total = 0
    while True:
        block = handle.read(1024**2)
        if not block:
            return buffer.getvalue()
        total += len(block)
        if total > cap:
            raise Refused(
                "over the size limit",
                f"{name} holds more than {cap} bytes (the limit for one file)",
            )
        if packed is not None and total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(packed, 1):
            raise Refused(
                "over the size limit",
                f"{name} expands more than {MAX_RATIO} times ({packed} bytes compressed)",
            )
        buffer.write(block)


def _copy_capped(handle, target: Path, name: str, cap: int) -> int:
    """Stream a member to a file on disk in 1 MiB blocks (memory stays at one block), stopping
    (Refused) once it is over `cap` bytes."""
    total = 0
    with open(target, "wb") as out:
        while block := handle.read(1024**2):
            total += len(block)
            if total > cap:
                raise Refused(
                    "over the size limit",
                    f"{name} holds more than {cap} bytes (the limit for one file)",
                )
            out.write(block)
    return total


def copy_member(source, name: str, target: Path, cap: int = MAX_MEMBER_BYTES) -> None:
    """A member (e.g. samples.npy) to disk under the byte cap, never whole in memory."""
    if source.size(name) > cap:
        raise Refused(
            "over the size limit",
            f"{name} declares {source.size(name)} bytes; the limit for one file is {cap}",
        )
    try:
        with source.open(name) as handle:
            _copy_capped(handle, target, name, cap)
    except Refused:
        raise
    except (*DAMAGE, NotImplementedError, RuntimeError) as exc:
        raise Refused("unreadable", f"{name}: the archive member cannot be read ({exc})") from exc


class FolderSource:
    """Files on disk under chosen names (`images/a.png` -> /data/imgs/a.png)."""

    def __init__(self, files: dict[str, Path]):
        self.files = files

    @classmethod
    def image_mask_folders(cls, images_dir: Path, masks_dir: Path) -> FolderSource:
        files = {f"images/{p.name}": p for p in sorted(images_dir.iterdir()) if p.is_file()}
        files.update({f"masks/{p.name}": p for p in sorted(masks_dir.iterdir()) if p.is_file()})
        return cls(files)

    def names(self) -> list[str]:
        return list(self.files)

    def size(self, name: str) -> int:
        return self.files[name].stat().st_size

    def read(self, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
        path = self.files[name]
        if path.is_symlink():  # an import reads the files it was given, never what they point to
            raise Refused("unreadable", f"{name} is a symbolic link; copy the file instead")
        if path.stat().st_size > cap:
            raise Refused(
                "over the size limit",
                f"{name} is {path.stat().st_size} bytes; the limit for one file is {cap}",
            )
        return path.read_bytes()

    def open(self, name: str):
        if self.files[name].is_symlink():
            raise Refused("unreadable", f"{name} is a symbolic link; copy the file instead")
        return open(self.files[name], "rb")

    def close(self) -> None:
        pass


class ZipSource:
    """A zip archive: the central directory is the index (declared sizes checked before
    reading); a member that cannot be read (bad CRC, damaged data) is refused alone."""

    def __init__(self, path: Path):
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ValueError(f"the archive is damaged: {exc}") from exc
        infos = self.archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"the archive has {len(infos)} files; at most {MAX_MEMBERS}")
        self.infos = {}
        for info in infos:
            if "\x00" in info.orig_filename:
                raise ValueError(
                    f"the archive is damaged: a file name holds a NUL byte ({info.orig_filename!r})"
                )
            if not info.is_dir():
                self.infos[info.filename] = info

    def names(self) -> list[str]:
        return list(self.infos)

    def size(self, name: str) -> int:
        return self.infos[name].file_size

    def read(self, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
        info = self.infos[name]
        if info.file_size > cap:
            raise Refused(
                "over the size limit",
                f"{name} declares {info.file_size} bytes; the limit for one file is {cap}",
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(
            info.compress_size, 1
        ):
            raise Refused(
                "over the size limit",
                f"{name} expands {info.file_size / max(info.compress_size, 1):.0f} times "
                f"(more than {MAX_RATIO}); refused without inflating it",
            )
        try:
            with self.archive.open(info) as handle:
                return _read_capped(handle, name, cap, info.compress_size)
        except Refused:
            raise
        except (*DAMAGE, NotImplementedError, RuntimeError, ValueError) as exc:
            raise Refused(
                "unreadable", f"{name}: the archive member cannot be read ({exc})"
            ) from exc

    def open(self, name: str):
        return self.archive.open(self.infos[name])

    def close(self) -> None:
        self.archive.close()


class TarSource:
    """A tar archive (plain, gz, bz2, xz). A tar has no index: the headers are walked once, and
    a member declaring more than MAX_MEMBER_BYTES (or members declaring more than MAX_RATIO
    times the archive) refuse the archive before anything is inflated, since skipping a member
    of a compressed tar means inflating it."""

    def __init__(self, path: Path):
        packed = max(path.stat().st_size, 1)
        try:
            self.archive = tarfile.open(path)
        except DAMAGE as exc:
            raise ValueError(f"the archive is damaged: {exc}") from exc
        self.infos = {}
        declared = 0
        try:
            while (member := self.archive.next()) is not None:
                check_tar_member(member, declared := declared + member.size, packed)
                if len(self.infos) >= MAX_MEMBERS:
                    raise ValueError(f"the archive has more than {MAX_MEMBERS} files")
                if member.isfile():
                    self.infos[member.name] = member
        except ValueError:
            self.archive.close()
            raise
        except DAMAGE as exc:
            self.archive.close()
            raise ValueError(f"the archive is damaged: {exc}") from exc

    def names(self) -> list[str]:
        return list(self.infos)

    def size(self, name: str) -> int:
        return self.infos[name].size

    def read(self, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
        member = self.infos[name]
        if member.size > cap:
            raise Refused(
                "over the size limit",
                f"{name} declares {member.size} bytes; the limit for one file is {cap}",
            )
        try:
            handle = self.archive.extractfile(member)
            return _read_capped(handle, name, cap, None) if handle else b""
        except Refused:
            raise
        except DAMAGE as exc:
            raise Refused(
                "unreadable", f"{name}: the archive member cannot be read ({exc})"
            ) from exc

    def open(self, name: str):
        return self.archive.extractfile(self.infos[name]) or io.BytesIO()

    def close(self) -> None:
        self.archive.close()


def check_tar_member(member: tarfile.TarInfo, declared: int, packed: int) -> None:
    if member.size > MAX_MEMBER_BYTES:
        raise ValueError(
            f"the archive is refused: {member.name} declares {member.size} bytes, over the limit "
            f"of {MAX_MEMBER_BYTES} for one file (a tar cannot be read past it without inflating it)"
        )
    if declared > RATIO_FLOOR_BYTES and declared > MAX_RATIO * packed:
        raise ValueError(
            f"the archive is refused: its files declare {declared} bytes, more than {MAX_RATIO} "
            f"times its {packed} bytes"
        )


def open_archive(path: str | Path):
    """A zip or tar (gz/bz2/xz) archive as a source; ValueError (naming the problem) for
    anything else, a damaged archive, or one over the caps."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return ZipSource(path)
    try:
        if tarfile.is_tarfile(path):
            return TarSource(path)
    except DAMAGE as exc:
        if _compression(path):
            raise ValueError(f"the archive is damaged: {exc}") from exc
    raise ValueError("the upload is not a zip or tar archive")


def _compression(path: Path) -> str:
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return "gz"
    if magic.startswith(b"BZh"):
        return "bz2"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return ""


class _LookSpent(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A read-only stream that stops (`_LookSpent`) after `budget` bytes."""

    def __init__(self, inner, budget: int):
        self.inner, self.left = inner, budget

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise _LookSpent
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.inner.read(size)
        self.left -= len(data)
        return data


def inspect_archive(path: str | Path, look_bytes: int = INDEX_LOOK_BYTES) -> None:
    """The upload request's check, cheap by construction: the type; for a zip its central
    directory (names, declared sizes, each local header's signature); for a tar its headers
    within the first `look_bytes` decompressed bytes. ValueError naming the problem; the worker
    reads the members, each under the caps."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        source = ZipSource(path)
        try:
            size = path.stat().st_size
            with open(path, "rb") as raw:
                for info in source.archive.infolist():
                    if not 0 <= info.header_offset <= size - 30:
                        raise ValueError(
                            f"the archive is damaged: {info.filename} is outside the file"
                        )
                    raw.seek(info.header_offset)
                    if raw.read(4) != b"PK\x03\x04":
                        raise ValueError(
                            f"the archive is damaged: {info.filename} is not where its index says"
                        )
        finally:
            source.close()
        return
    kind = _compression(path)
    opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind, open)
    seen = 0
    declared = 0
    packed = max(path.stat().st_size, 1)
    try:
        with (
            opener(path, "rb") as inner,
            tarfile.open(fileobj=_Bounded(inner, look_bytes), mode="r|") as tar,
        ):
            for member in tar:
                seen += 1
                check_tar_member(member, declared := declared + member.size, packed)
    except _LookSpent:
        return
    except ValueError:
        raise
    except DAMAGE as exc:
        if not seen and not kind:
            raise ValueError("the upload is not a zip or tar archive") from exc
        raise ValueError(f"the archive is damaged: {exc}") from exc
    if not seen:
        raise ValueError("the upload is not a zip or tar archive")


def _visible(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


# ----------------------------------------------------------------------------- image/mask pairs


def plan_pairs(names: list[str]) -> tuple[list[tuple[str, str, str]], list[tuple[str, Refused]]]:
    """Match images to masks by name: [(pair name, image file, mask file)], and the files that
    found no partner. A mask `<stem>` or `<stem>_mask` is the image's one object; masks
    `<stem>_<n>` are its objects, one pair each. Files outside `images/` and `masks/` folders
    (any depth) are ignored."""
    images: dict[str, str] = {}
    masks: list[str] = []
    orphans: list[tuple[str, Refused]] = []
    for name in sorted(n for n in names if _visible(n)):
        path = PurePosixPath(name)
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES | UNSUPPORTED_SUFFIXES or len(path.parts) < 2:
            continue
        folder = path.parts[-2].lower()
        if folder == "images":
            if path.stem in images:
                orphans.append(
                    (name, Refused("duplicate name", f"{name}: another image is also {path.stem}"))
                )
                continue
            images[path.stem] = name
        elif folder == "masks":
            masks.append(name)
    pairs: dict[str, list[tuple[str, str, str]]] = {stem: [] for stem in images}
    for name in masks:
        stem = PurePosixPath(name).stem
        numbered = re.fullmatch(r"(.+)_(\d+)", stem)
        if stem in images:
            key = stem
        elif stem.removesuffix("_mask") in images:
            key = stem.removesuffix("_mask")
        elif numbered and numbered.group(1) in images:
            key = numbered.group(1)
        else:
            orphans.append((name, Refused("no image", f"{name}: no image images/{stem}.*")))
            continue
        pairs[key].append(
            (key if key in (stem, stem.removesuffix("_mask")) else stem, images[key], name)
        )
    out = []
    for stem, found in pairs.items():
        if not found:
            orphans.append(
                (images[stem], Refused("no mask", f"{images[stem]}: no mask masks/{stem}.*"))
            )
        natural = sorted(
            found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p[0])]
        )
        out.extend(natural)
    return out, orphans


def _unsupported(data: bytes, name: str) -> None:
    """Refuse formats we do not read, by suffix or (HEIF renamed .jpg) by content."""
    suffix = PurePosixPath(name).suffix.lower()
    heif = data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS
    if suffix in UNSUPPORTED_SUFFIXES or heif:
        what = "HEIC/HEIF" if heif or suffix in (".heic", ".heif") else suffix.lstrip(".").upper()
        raise Refused(
            "format not supported", f"{name}: {what} is not supported ({SUPPORTED_WORDS})"
        )


# EXIF orientation -> the transpose that shows the picture as viewers do (as ImageOps.exif_transpose)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class Decoded:
    """One decoded file: the pixels as viewers show them (EXIF orientation applied) and what
    was done to get them (`notes`: sentences for the report; `meta`: the same, for the row)."""

    pixels: np.ndarray
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _open_checked(data: bytes, name: str, max_pixels: int):
    _unsupported(data, name)
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    if width * height > max_pixels:
        raise Refused(
            "over the pixel limit",
            f"{name} is {width} x {height} pixels (width x height) = {width * height} pixels; "
            f"the limit is {max_pixels} (IMPORT_MAX_PIXELS)",
        )
    deep = _deep_colour(im)  # before getexif(), which loads a PNG and forgets its tiles
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except (TypeError, ValueError):
        orientation = 1
    return im, orientation if orientation in _ORIENT else 1, deep


def _decode_errors(name: str):
    """A context turning decoder errors into Refused (naming the file)."""
    import contextlib

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except Refused:
            raise
        except Image.DecompressionBombError as exc:
            raise Refused(
                "over the pixel limit",
                f"{name} claims more pixels than Pillow will decode (IMPORT_MAX_PIXELS): {exc}",
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            why = (
                "not an image format Pillow recognises"
                if isinstance(exc, UnidentifiedImageError)
                else str(exc)
            )
            raise Refused("unreadable", f"{name}: not a readable image ({why})") from exc

    return guard()


def _deep_colour(im) -> bool:
    """A 16-bit-per-channel colour image (Pillow would keep only its top 8 bits)."""
    return im.mode in ("RGB", "RGBA") and any(";16" in str(t.args) for t in (im.tile or []))


def decode_image(data: bytes, name: str, max_pixels: int) -> Decoded:
    """An image file to uint8 H x W x 3 as viewers show it. EXIF orientation is applied;
    16-bit (or 32-bit, float) pixels are mapped to 8 bits with a linear min-max window, stated
    in the notes (the stored original keeps the depth); alpha is dropped."""
    with _decode_errors(name):
        im, orientation, deep = _open_checked(data, name, max_pixels)
        notes, meta = [], {}
        if deep:
            import cv2

            raw = cv2.imdecode(
                np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
            )
            if raw is None or raw.ndim != 3:
                raise Refused("unreadable", f"{name}: a 16-bit colour image OpenCV cannot read")
            raw = cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2RGB)
            pixels, window = window_to_uint8(raw)
            meta.update(bit_depth=16, **window)
            im = Image.fromarray(pixels)
        elif im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            pixels, window = window_to_uint8(np.asarray(im))
            meta.update(bit_depth=32 if im.mode in ("I", "F") else 16, **window)
            im = Image.fromarray(pixels).convert("RGB")
        if "window" in meta:
            low, high = meta["window"]
            notes.append(
                f"{meta['bit_depth']}-bit image shown and computed as 8-bit through the window "
                f"{low:g}..{high:g} (min-max, linear); the original keeps its depth"
            )
        if orientation != 1:
            im = (
                im.transpose(_ORIENT[orientation])
                if "window" in meta
                else ImageOps.exif_transpose(im)
            )
            meta["exif_orientation"] = orientation
            notes.append(f"EXIF orientation {orientation} applied (as viewers show the photo)")
        return Decoded(np.ascontiguousarray(np.asarray(im.convert("RGB"))), notes, meta)


def decode_mask(data: bytes, name: str, max_pixels: int) -> Decoded:
    """A mask file to bool H x W, EXIF orientation applied as for images.

    Channels: grey or colour masks use their grey value; with an alpha channel, a mask whose
    colour is constant and whose alpha varies is read from the alpha (the object drawn as
    opaque on transparent); one whose alpha is constant is read from the colour; one where
    both vary and disagree is refused ("ambiguous mask").
    Values: two values (0 and one other) -> the other is the object; more values (JPEG noise,
    soft edges) -> binarised at half the range (>= 128 of 255, >= 32768 of 65535), with a
    warning giving the share of pixels that were neither extreme."""
    with _decode_errors(name):
        im, orientation, _ = _open_checked(data, name, max_pixels)
        notes, meta = [], {}
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
            meta["exif_orientation"] = orientation
            notes.append(f"EXIF orientation {orientation} applied")
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        values: np.ndarray
        full = 255
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = np.asarray(im.convert("RGBA"))
            colour, alpha = rgba[:, :, :3], rgba[:, :, 3]
            grey = np.asarray(im.convert("RGB").convert("L"))
            colour_flat = bool((colour == colour.reshape(-1, 3)[0]).all())
            alpha_flat = bool((alpha == alpha.flat[0]).all())
            if alpha_flat or not colour_flat and np.array_equal(grey > 0, alpha > 0):
                values = grey
            elif colour_flat:
                values = alpha
                meta["mask_channel"] = "alpha"
                notes.append("read from its alpha channel (its colour is the same everywhere)")
            else:
                raise Refused(
                    "ambiguous mask",
                    f"{name}: both its colour and its alpha channel vary and they disagree; save "
                    "the object as white on black (or as opaque on transparent, one colour)",
                )
        elif im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            values = np.asarray(im)
            full = 65535
        elif im.mode == "F":
            values = np.asarray(im)
            full = 1.0 if float(values.max()) <= 1.0 else 255
        else:
            values = np.asarray(im.convert("L"))
        distinct = np.unique(values)
        if len(distinct) == 2:  # 0/1, 0/255, or any two values: the higher is the object
            return Decoded(values == distinct[1], notes, meta)
        if len(distinct) == 1:
            return Decoded(values > 0, notes, meta)
        threshold = 0.5 if full == 1.0 else (full + 1) // 2  # 128 of 255, 32768 of 65535
        extreme = (values == 0) | (values == full)
        share = float(1.0 - extreme.mean())
        meta.update(
            mask_threshold=threshold,
            mask_values=int(len(distinct)),
            mask_grey_share=round(share, 4),
        )
        notes.append(
            f"not cleanly two-valued ({len(distinct)} values; {share:.1%} of pixels neither "
            f"0 nor {full:g}, e.g. JPEG noise): binarised at >= {threshold:g} of {full:g} "
            "(half the range); check it"
        )
        return Decoded(values >= threshold, notes, meta)


def decode(data: bytes, name: str, max_pixels: int, mode: str) -> np.ndarray:
    """Decode one file to an array: `mode` "RGB" (uint8 H x W x 3) or "L" (a mask, bool)."""
    if mode == "RGB":
        return decode_image(data, name, max_pixels).pixels
    return decode_mask(data, name, max_pixels).pixels


def read_member(source, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
    return source.read(name, cap)


@dataclass
class Pair:
    """A checked pair: the working copy (image uint8 H x W x 3, label bool H x W) and, when it
    came from files, where it came from (`original`: the uploaded bytes and names)."""

    image: np.ndarray
    label: np.ndarray
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    original: dict | None = None

    def __iter__(self):  # (image, label), as the checkers returned before
        return iter((self.image, self.label))


def working_copy(image: np.ndarray, label: np.ndarray, max_side: int, where: str):
    """The copy studies show and compute on: longest side at most `max_side` pixels. The image
    is resampled with Lanczos; the mask with an area average thresholded at one half, so the
    object keeps its shape. Returns (image, label, scale) with scale = new / original long side
    (1.0 when small enough)."""
    height, width = label.shape
    long_side = max(width, height)
    if long_side <= max_side:
        return image, label, 1.0
    scale = max_side / long_side
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    area = Image.fromarray(label.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
    small_label = np.asarray(area) >= 128
    if not small_label.any():
        raise Refused(
            "empty mask",
            f"{where}: the object is too small to survive the working copy of {size[0]} x "
            f"{size[1]} pixels (IMPORT_MAX_SIDE {max_side})",
        )
    return np.ascontiguousarray(small), small_label, scale


def check_pair_files(
    source, image_name: str, mask_name: str, max_pixels: int, max_side: int | None = None
):
    """A checked Pair (working copy, notes, the original files) or Refused naming the file."""
    if max_side is None:
        max_side = settings.IMPORT_MAX_SIDE
    cap = image_member_cap(max_pixels)
    image_bytes = read_member(source, image_name, cap)
    decoded = decode_image(image_bytes, image_name, max_pixels)
    mask_bytes = read_member(source, mask_name, cap)
    mask = decode_mask(mask_bytes, mask_name, max_pixels)
    image, label = check_label(decoded.pixels, mask.pixels, mask_name, image_name)
    height, width = label.shape
    image, label, scale = working_copy(image, label, max_side, image_name)
    notes = decoded.notes + [f"mask: {n}" for n in mask.notes]
    meta = {
        **decoded.meta,
        **{f"mask_{k}" if not k.startswith("mask_") else k: v for k, v in mask.meta.items()},
    }
    if scale != 1.0:
        notes.append(
            f"working copy {image.shape[1]} x {image.shape[0]} pixels (width x height), scaled by "
            f"{scale:.4g} from the original {width} x {height} (IMPORT_MAX_SIDE {max_side}); "
            "the original is kept"
        )
    return Pair(
        image,
        label,
        notes,
        meta,
        {
            "image_name": PurePosixPath(image_name).name,
            "mask_name": PurePosixPath(mask_name).name,
            "image_bytes": image_bytes,
            "mask_bytes": mask_bytes,
            "width": width,
            "height": height,
            "scale": scale,
        },
    )


def check_label(image: np.ndarray, label: np.ndarray, mask_name: str, image_name: str):
    if label.shape != image.shape[:2]:
        raise Refused(
            "size mismatch",
            f"{mask_name} is {label.shape[1]} x {label.shape[0]} pixels, {image_name} is "
            f"{image.shape[1]} x {image.shape[0]} (width x height)",
        )
    if not label.any():
        raise Refused("empty mask", f"{mask_name} has no object pixel (all 0)")
    return image, label


# ----------------------------------------------------------------------------- PointPrompt


def load_pointprompt_arrays(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    for required in ("samples.npy", "labels.npy"):
        if not (directory / required).is_file():
            raise ValueError(f"{directory} has no {required}")
    samples = load_npy(directory / "samples.npy")
    labels = load_npy(directory / "labels.npy")
    if samples.ndim == 0 or labels.ndim == 0:
        raise ValueError("samples.npy and labels.npy must be arrays of images")
    if len(samples) != len(labels):
        raise ValueError(f"samples.npy has {len(samples)} images but labels.npy has {len(labels)}")
    return samples, labels


def check_pointprompt_item(samples, labels, i: int, max_pixels: int, max_side: int | None = None):
    """A checked Pair from samples[i] / labels[i]; over IMPORT_MAX_SIDE it is scaled down and
    the full-size (normalised) image and label are kept as the original (PNG)."""
    if max_side is None:
        max_side = settings.IMPORT_MAX_SIDE
    sample = np.asarray(samples[i])
    if sample.ndim >= 2 and sample.shape[0] * sample.shape[1] > max_pixels:
        raise Refused(
            "over the pixel limit",
            f"samples[{i}] is {sample.shape[1]} x {sample.shape[0]} pixels (width x height) = "
            f"{sample.shape[0] * sample.shape[1]} pixels; the limit is {max_pixels} (IMPORT_MAX_PIXELS)",
        )
    try:
        image = normalise_image(sample, f"samples[{i}]")
        label = normalise_label(labels[i], f"labels[{i}]")
    except ValueError as exc:
        raise Refused("unreadable", str(exc)) from exc
    if label.shape != image.shape[:2]:
        raise Refused(
            "size mismatch",
            f"labels[{i}] is {label.shape[1]} x {label.shape[0]} pixels, image {i} is "
            f"{image.shape[1]} x {image.shape[0]} (width x height)",
        )
    if not label.any():
        raise Refused("empty mask", f"labels[{i}] has no object pixel (all 0)")
    height, width = label.shape
    small, small_label, scale = working_copy(image, label, max_side, f"samples[{i}]")
    if scale == 1.0:
        return Pair(image, label)
    from studies.core.datasets import png_bytes

    return Pair(
        small,
        small_label,
        [
            f"working copy {small.shape[1]} x {small.shape[0]} pixels (width x height), scaled by "
            f"{scale:.4g} from the original {width} x {height} (IMPORT_MAX_SIDE {max_side}); "
            "the original is kept"
        ],
        {},
        {
            "image_name": "",
            "mask_name": "",
            "image_bytes": png_bytes(image),
            "mask_bytes": png_bytes(label.astype(np.uint8) * 255),
            "image_suffix": ".png",
            "mask_suffix": ".png",
            "width": width,
            "height": height,
            "scale": scale,
        },
    )


# ----------------------------------------------------------------------------- importing


@dataclass
class Plan:
    """What an import will try: `total` pairs, checked one at a time by `check(k)`."""

    names: list[str]
    check: Callable[[int], tuple[np.ndarray, np.ndarray]]
    source_kind: str
    orphans: list[tuple[str, Refused]] = field(default_factory=list)


def plan_source(source, workdir: Path, max_pixels: int) -> Plan:
    """A PointPrompt pair if the source has `samples.npy` and `labels.npy` in one folder, else
    image/mask pairs by name; ValueError when it holds neither."""
    names = [n for n in source.names() if _visible(n)]
    by_folder: dict[str, set[str]] = {}
    for name in names:
        path = PurePosixPath(name)
        by_folder.setdefault(str(path.parent), set()).add(path.name)
    for folder, files in sorted(by_folder.items()):
        if {"samples.npy", "labels.npy"} <= files:
            for required in ("samples.npy", "labels.npy"):
                member = required if folder == "." else f"{folder}/{required}"
                try:
                    copy_member(source, member, workdir / required)
                except Refused as exc:
                    raise ValueError(exc.detail) from exc
            samples, labels = load_pointprompt_arrays(workdir)
            return Plan(
                [f"{i}" for i in range(len(samples))],
                functools.partial(check_pointprompt_item, samples, labels, max_pixels=max_pixels),
                "pointprompt",
            )
    pairs, orphans = plan_pairs(names)
    if not pairs and not orphans:
        raise ValueError(
            "found neither images/ + masks/ folders with image files nor samples.npy + labels.npy"
        )
    return Plan(
        [p[0] for p in pairs],
        lambda k: check_pair_files(source, pairs[k][1], pairs[k][2], max_pixels),
        "upload",
        orphans,
    )


def import_source(
    source,
    name: str,
    *,
    strict: bool,
    description: str = "",
    max_pixels: int | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[Dataset | None, ImportReport]:
    """Check every pair of `source` and store the accepted ones as one data set, in one
    transaction (files written only for accepted pairs, removed if anything fails).

    strict: the first refused pair raises ValueError and nothing is stored (command line).
    Otherwise refused pairs go into the report; no accepted pair at all raises ValueError
    with the report attached (`exc.report`)."""
    if Dataset.objects.filter(name=name).exists():
        raise ValueError(f"a data set named {name!r} already exists")
    if max_pixels is None:
        max_pixels = settings.IMPORT_MAX_PIXELS
    report = ImportReport()
    workdir = Path(tempfile.mkdtemp(prefix="intervene-import-"))
    try:
        plan = plan_source(source, workdir, max_pixels)
        for orphan, exc in plan.orphans:
            if strict:
                raise ValueError(exc.detail)
            report.refuse(orphan, exc)
        total = len(plan.names)

        def accepted() -> Iterator:
            for k, pair_name in enumerate(plan.names):
                try:
                    pair = plan.check(k)
                except Refused as exc:
                    if strict:
                        raise ValueError(exc.detail) from exc
                    report.refuse(pair_name, exc)
                else:
                    if not isinstance(pair, Pair):
                        pair = Pair(*pair)
                    image = pair.image
                    line = {
                        "name": pair_name,
                        "index": len(report.accepted),
                        "width": int(image.shape[1]),
                        "height": int(image.shape[0]),
                    }
                    if pair.original:
                        if pair.original["image_name"]:
                            line["file"] = pair.original["image_name"]
                        if pair.original["scale"] != 1.0:
                            line["original_width"] = pair.original["width"]
                            line["original_height"] = pair.original["height"]
                    if pair.notes:
                        line["notes"] = pair.notes
                    report.accepted.append(line)
                    yield (
                        image,
                        pair.label,
                        None,
                        "",
                        {"original": pair.original, "notes": pair.meta},
                    )
                progress(k + 1, total)

        try:
            dataset = create_dataset(
                name,
                accepted(),
                source=plan.source_kind,
                description=description,
                require_items=True,
            )
        except ValueError as exc:
            exc.report = report  # type: ignore[attr-defined]
            raise
        return dataset, report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def import_summary(dataset: Dataset) -> str:
    """One line for the command line: what the import did to the pixels (or that it did nothing)."""
    images = dataset.images.all()
    scaled = images.exclude(scale=1.0).count()
    oriented = images.filter(import_notes__has_key="exif_orientation").count()
    windowed = images.filter(import_notes__has_key="window").count()
    alpha = images.filter(import_notes__mask_channel="alpha").count()
    thresholded = images.filter(import_notes__has_key="mask_threshold").count()
    parts = [
        f"{scaled} scaled to a working copy of at most {settings.IMPORT_MAX_SIDE} pixels a side "
        "(originals kept)"
        if scaled
        else "",
        f"{oriented} turned by their EXIF orientation" if oriented else "",
        f"{windowed} deeper than 8 bits shown through a min-max window" if windowed else "",
        f"{alpha} masks read from their alpha channel" if alpha else "",
        f"{thresholded} masks not cleanly two-valued, binarised at half the range: check them"
        if thresholded
        else "",
    ]
    said = "; ".join(p for p in parts if p)
    return f"pixels: {said}" if said else "pixels: stored as given"


def import_pointprompt(directory: str | Path, name: str) -> Dataset:
    """Import one PointPrompt data set folder (samples.npy + labels.npy); all or nothing."""
    directory = Path(directory)
    for required in ("samples.npy", "labels.npy"):
        if (directory / required).is_symlink():
            raise ValueError(f"{directory / required} is a symbolic link; copy the file instead")
        if not (directory / required).is_file():
            raise ValueError(f"{directory} has no {required}")
    source = FolderSource({f: directory / f for f in ("samples.npy", "labels.npy")})
    dataset, _ = import_source(source, name, strict=True, description=f"Imported from {directory}")
    return dataset


def import_images(images_dir: str | Path, masks_dir: str | Path, name: str) -> Dataset:
    """Import image/mask pairs matched by file name (see the module doc); all or nothing."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if folder.is_symlink():
            raise ValueError(f"{folder} is a symbolic link; pass the folder itself")
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise ValueError(f"{images_dir} and {masks_dir} must be folders")
    source = FolderSource.image_mask_folders(images_dir, masks_dir)
    if not any(
        n.startswith("images/") and PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
        for n in source.names()
    ):
        raise ValueError(f"no images in {images_dir}")
    dataset, _ = import_source(source, name, strict=True, description=f"Imported from {images_dir}")
    return dataset


def import_archive(
    path: str | Path, name: str, *, max_pixels: int, progress=lambda done, total: None
) -> tuple[Dataset, ImportReport]:
    """The web upload: keep accepted pairs, report refused ones (ValueError if none is accepted)."""
    source = open_archive(path)
    try:
        return import_source(
            source,
            name,
            strict=False,
            description="Uploaded through the researcher pages",
            max_pixels=max_pixels,
            progress=progress,
        )
    finally:
        source.close()
