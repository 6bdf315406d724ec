"""Storing data sets: images and ground-truth masks as files, one row per image."""

from __future__ import annotations

import hashlib
import io
from pathlib import PurePosixPath

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from studies.models import Dataset, DatasetImage


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def check_pair(image: np.ndarray, mask: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate an image (uint8 H x W x 3) and its mask (H x W, {0, 1} or bool); name the problem."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    if mask.ndim != 2 or mask.shape != image.shape[:2]:
        raise ValueError(f"{where}: mask shape {mask.shape} does not match image {image.shape[:2]}")
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"{where}: mask values must be 0/1, got {values[:10].tolist()}")
    return image, mask.astype(bool)


def create_dataset(
    name: str,
    items,
    *,
    source: str,
    seed: int | None = None,
    description: str = "",
    require_items: bool = False,
) -> Dataset:
    """Create a data set from an iterable of (image uint8 HxWx3, mask bool HxW, label|None, class_name)
    or the same with a fifth element, `{"original": {...} | None, "notes": {...}}` (an import:
    the uploaded files, their names and size, the working copy's scale; see `importers.Pair`).

    All or nothing: an invalid item (or any exception while `items` runs) raises, no row is
    kept and the files already written are removed. `require_items`: an empty data set is a
    ValueError too.
    """
    written: list = []
    try:
        with transaction.atomic():
            dataset = _store(name, items, source, seed, description, written)
            if require_items and not written:
                raise ValueError("no image was accepted: the data set would be empty")
    except BaseException:
        for file in written:
            file.storage.delete(file.name)
        raise
    return dataset


def _store(name, items, source, seed, description, written) -> Dataset:
    if Dataset.objects.filter(name=name).exists():
        raise ValueError(f"a data set named {name!r} already exists")
    dataset = Dataset.objects.create(name=name, source=source, seed=seed, description=description)
    for index, item in enumerate(items):
        image, mask, label, class_name = item[:4]
        extra = item[4] if len(item) > 4 else {}
        original = extra.get("original") or {}
        image, mask = check_pair(np.asarray(image), np.asarray(mask), f"{name}[{index}]")
        image_png = png_bytes(image)
        row = DatasetImage(
            dataset=dataset,
            index=index,
            class_label=label,
            class_name=class_name or "",
            width=image.shape[1],
            height=image.shape[0],
            sha256=hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest(),
            original_name=original.get("image_name", ""),
            mask_name=original.get("mask_name", ""),
            import_notes=extra.get("notes") or {},
        )
        if original and original.get("scale", 1.0) != 1.0:
            row.scale = original["scale"]
            row.original_width, row.original_height = original["width"], original["height"]
        row.image.save(f"{index}.png", ContentFile(image_png), save=False)
        written.append(row.image)
        row.mask.save(
            f"{index}_mask.png", ContentFile(png_bytes(mask.astype(np.uint8) * 255)), save=False
        )
        written.append(row.mask)
        for field, key, default in (
            ("original_image", "image", ""),
            ("original_mask", "mask", "_mask"),
        ):
            if original.get(f"{key}_bytes") is None:
                continue
            suffix = original.get(f"{key}_suffix") or PurePosixPath(original[f"{key}_name"]).suffix
            getattr(row, field).save(
                f"{index}{default}{suffix.lower()}",
                ContentFile(original[f"{key}_bytes"]),
                save=False,
            )
            written.append(getattr(row, field))
        row.save()
    return dataset
