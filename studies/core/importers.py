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
Masks are binary or 0/255 (any value > 0 is the object).
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from studies.core.datasets import create_dataset
from studies.core.safe_npy import load_npy
from studies.models import Dataset

REASONS = (
    "unreadable",
    "size mismatch",
    "empty mask",
    "over the pixel limit",
    "no mask",
    "no image",
    "duplicate name",
)
MAX_MEMBER_BYTES = 1024**3  # one file inside an archive, uncompressed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


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
        if image.min() < 0 or image.max() > 255:
            raise ValueError(f"{where}: integer image values outside 0..255")
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
    accepted: list[dict] = field(default_factory=list)  # {name, index, width, height}
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
            "accepted_pairs": self.accepted,
            "refused_pairs": self.refused,
        }


# ----------------------------------------------------------------------------- sources


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

    def read(self, name: str) -> bytes:
        path = self.files[name]
        if path.is_symlink():  # an import reads the files it was given, never what they point to
            raise Refused("unreadable", f"{name} is a symbolic link; copy the file instead")
        return path.read_bytes()

    def close(self) -> None:
        pass


class ZipSource:
    def __init__(self, path: Path):
        self.archive = zipfile.ZipFile(path)
        self.infos = {i.filename: i for i in self.archive.infolist() if not i.is_dir()}

    def names(self) -> list[str]:
        return list(self.infos)

    def size(self, name: str) -> int:
        return self.infos[name].file_size

    def read(self, name: str) -> bytes:
        return self.archive.read(self.infos[name])

    def close(self) -> None:
        self.archive.close()


class TarSource:
    def __init__(self, path: Path):
        self.archive = tarfile.open(path)
        self.infos = {m.name: m for m in self.archive.getmembers() if m.isfile()}

    def names(self) -> list[str]:
        return list(self.infos)

    def size(self, name: str) -> int:
        return self.infos[name].size

    def read(self, name: str) -> bytes:
        handle = self.archive.extractfile(self.infos[name])
        return handle.read() if handle else b""

    def close(self) -> None:
        self.archive.close()


def open_archive(path: str | Path):
    """A zip or tar (gz/bz2/xz) archive as a source; ValueError for anything else."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return ZipSource(path)
    try:
        if tarfile.is_tarfile(path):
            return TarSource(path)
    except OSError:
        pass
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
        if path.suffix.lower() not in IMAGE_SUFFIXES or len(path.parts) < 2:
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


def decode(data: bytes, name: str, max_pixels: int, mode: str) -> np.ndarray:
    """Decode one PNG/JPEG/... file to an array (`mode` RGB or L), refusing huge or broken ones."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise Refused(
                    "over the pixel limit",
                    f"{name} is {width} x {height} = {width * height} pixels; "
                    f"the limit is {max_pixels} (IMPORT_MAX_PIXELS)",
                )
            return np.asarray(im.convert(mode))
    except Image.DecompressionBombError as exc:
        raise Refused(
            "over the pixel limit",
            f"{name} claims more pixels than Pillow will decode (limit IMPORT_MAX_PIXELS "
            f"{max_pixels}): {exc}",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, Refused):
            raise
        why = (
            "not an image format Pillow recognises"
            if isinstance(exc, UnidentifiedImageError)
            else str(exc)
        )
        raise Refused("unreadable", f"{name}: not a readable image ({why})") from exc


def read_member(source, name: str) -> bytes:
    if source.size(name) > MAX_MEMBER_BYTES:
        raise Refused("over the pixel limit", f"{name} is larger than {MAX_MEMBER_BYTES} bytes")
    return source.read(name)


def check_pair_files(source, image_name: str, mask_name: str, max_pixels: int):
    """(image uint8 H x W x 3, mask bool H x W) or Refused naming the file and the reason."""
    image = decode(read_member(source, image_name), image_name, max_pixels, "RGB")
    mask = decode(read_member(source, mask_name), mask_name, max_pixels, "L")
    try:
        image = normalise_image(image, image_name)
    except ValueError as exc:
        raise Refused("unreadable", str(exc)) from exc
    label = normalise_label(mask, mask_name)
    return check_label(image, label, mask_name, image_name)


def check_label(image: np.ndarray, label: np.ndarray, mask_name: str, image_name: str):
    if label.shape != image.shape[:2]:
        raise Refused(
            "size mismatch",
            f"{mask_name} has shape {label.shape}, {image_name} is {image.shape[:2]}",
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


def check_pointprompt_item(samples, labels, i: int, max_pixels: int):
    sample = np.asarray(samples[i])
    if sample.ndim >= 2 and sample.shape[0] * sample.shape[1] > max_pixels:
        raise Refused(
            "over the pixel limit",
            f"samples[{i}] has {sample.shape[0] * sample.shape[1]} pixels; "
            f"the limit is {max_pixels} (IMPORT_MAX_PIXELS)",
        )
    try:
        image = normalise_image(sample, f"samples[{i}]")
        label = normalise_label(labels[i], f"labels[{i}]")
    except ValueError as exc:
        raise Refused("unreadable", str(exc)) from exc
    if label.shape != image.shape[:2]:
        raise Refused(
            "size mismatch", f"labels[{i}] has shape {label.shape}, image {i} is {image.shape[:2]}"
        )
    if not label.any():
        raise Refused("empty mask", f"labels[{i}] has no object pixel (all 0)")
    return image, label


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
                (workdir / required).write_bytes(read_member(source, member))
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
                    image, label = plan.check(k)
                except Refused as exc:
                    if strict:
                        raise ValueError(exc.detail) from exc
                    report.refuse(pair_name, exc)
                else:
                    report.accepted.append(
                        {
                            "name": pair_name,
                            "index": len(report.accepted),
                            "width": int(image.shape[1]),
                            "height": int(image.shape[0]),
                        }
                    )
                    yield image, label, None, ""
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
