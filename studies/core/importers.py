"""Importing data sets: PointPrompt `samples.npy` / `labels.npy` pairs and image/mask folders.

Every input is checked before anything is stored (all or nothing), each problem is a one-line
ValueError, and memory stays bounded: an image may have at most `IMPORT_MAX_PIXELS` pixels
(checked from the header, before decoding), symbolic links are refused, and an empty data set
is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from studies.core.datasets import create_dataset
from studies.core.safe_npy import load_npy
from studies.models import Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def check_pixels(height: int, width: int, where: str) -> None:
    """ValueError when an image is larger than settings.IMPORT_MAX_PIXELS."""
    limit = settings.IMPORT_MAX_PIXELS
    if height * width > limit:
        raise ValueError(
            f"{where}: {width} x {height} pixels is more than the limit of {limit} "
            "(IMPORT_MAX_PIXELS)"
        )


def _not_a_link(path: Path) -> Path:
    if path.is_symlink():
        raise ValueError(f"{path}: symbolic links are not imported")
    return path


def normalise_image(image: np.ndarray, where: str) -> np.ndarray:
    """PointPrompt images to uint8 H x W x 3, as the collection tool showed them.

    2-D float images in [-1, 1] (seismic) become uint8 grey, then RGB; float images in [0, 1] are
    scaled by 255; grey images are repeated to RGB; RGBA drops alpha.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"{where}: image has shape {image.shape}, expected H x W or H x W x C")
    check_pixels(image.shape[0], image.shape[1], where)
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
        check_pixels(label.shape[0], label.shape[1], where)
        label = label.any(axis=2)
    if label.ndim != 2:
        raise ValueError(f"{where}: label has shape {label.shape}, expected H x W")
    check_pixels(label.shape[0], label.shape[1], where)
    if label.dtype.kind == "f" and not np.isfinite(label).all():
        raise ValueError(f"{where}: label has NaN or infinite values")
    return label > 0


def pointprompt_items(directory: Path):
    samples = load_npy(_not_a_link(directory / "samples.npy"))
    labels = load_npy(_not_a_link(directory / "labels.npy"))
    if samples.ndim == 0 or labels.ndim == 0:
        raise ValueError("samples.npy and labels.npy must be arrays of images")
    if len(samples) == 0:
        raise ValueError("samples.npy holds no images: nothing to import")
    if len(samples) != len(labels):
        raise ValueError(f"samples.npy has {len(samples)} images but labels.npy has {len(labels)}")
    items = []
    for i in range(len(samples)):
        image = normalise_image(samples[i], f"samples[{i}]")
        label = normalise_label(labels[i], f"labels[{i}]")
        if label.shape != image.shape[:2]:
            raise ValueError(f"labels[{i}] has shape {label.shape}, image {i} is {image.shape[:2]}")
        items.append((image, label, None, ""))
    return items


def import_pointprompt(directory: str | Path, name: str) -> Dataset:
    """Import one PointPrompt data set folder (samples.npy + labels.npy); all or nothing."""
    directory = Path(directory)
    for required in ("samples.npy", "labels.npy"):
        if not (directory / required).is_file():
            raise ValueError(f"{directory} has no {required}")
    items = pointprompt_items(directory)  # everything is checked before anything is stored
    return create_dataset(
        name, items, source="pointprompt", description=f"Imported from {directory}"
    )


def import_images(images_dir: str | Path, masks_dir: str | Path, name: str) -> Dataset:
    """Import image/mask pairs matched by file stem (mask `<stem>.png` or `<stem>_mask.png`)."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise ValueError(f"{images_dir} and {masks_dir} must be folders")
    _not_a_link(images_dir)
    _not_a_link(masks_dir)
    masks = {
        p.stem.removesuffix("_mask"): p
        for p in masks_dir.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images in {images_dir}")
    items = []
    for path in images:
        mask_path = masks.get(path.stem)
        if mask_path is None:
            raise ValueError(f"no mask for {path.name} in {masks_dir}")
        image = normalise_image(_read_image(path, "RGB"), path.name)
        label = normalise_label(_read_image(mask_path, "L"), mask_path.name)
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{mask_path.name} has shape {label.shape}, {path.name} is {image.shape[:2]}"
            )
        items.append((image, label, None, ""))
    return create_dataset(name, items, source="upload", description=f"Imported from {images_dir}")


def _read_image(path: Path, mode: str) -> np.ndarray:
    """The pixels of an image file, its size checked from the header before decoding."""
    _not_a_link(path)
    try:
        with Image.open(path) as im:
            check_pixels(im.height, im.width, path.name)
            return np.asarray(im.convert(mode))
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"{path.name}: not a readable image ({exc})") from None
