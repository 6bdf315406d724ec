"""Segmentation metrics and mask encoding.

IoU follows the PointPrompt protocol (score = |M & G| / |M | G|, 0 when the intersection is
empty); masks travel as COCO compressed RLE through pycocotools (Lin et al., 2014).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be boolean or numeric, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        arr = arr != 0
    return arr


def iou(mask: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union |M & G| / |M | G| of two same-shape masks (non-zero = inside);
    0.0 when the intersection is empty, including when both masks are empty."""
    m = _as_mask(mask, "mask")
    g = _as_mask(gt, "gt")
    if m.shape != g.shape:
        raise ValueError(f"mask shape {m.shape} differs from gt shape {g.shape}")
    inter = int(np.count_nonzero(m & g))
    if inter == 0:
        return 0.0
    return inter / int(np.count_nonzero(m | g))


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE ``{"size": [h, w], "counts": str}`` of a 2-D mask (JSON-ready)."""
    m = _as_mask(mask, "mask")
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Bool (h, w) mask from a COCO RLE dict (compressed str/bytes counts or uncompressed list)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("rle must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and v >= 0 for v in size)
    ):
        raise ValueError(f"rle 'size' must be [h, w] with non-negative integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int | np.integer) and c >= 0 for c in counts):
            raise ValueError("rle 'counts' list must hold non-negative integers")
        if sum(int(c) for c in counts) != h * w:
            raise ValueError(f"rle 'counts' sum to {sum(counts)}, expected h * w = {h * w}")
        coco = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, str | bytes):
        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        coco = {"size": [h, w], "counts": raw}
        # pycocotools does not check compressed counts; the decoded area must fit the size.
        total = _compressed_total(raw)
        if total != h * w:
            raise ValueError(f"rle 'counts' cover {total} pixels, expected h * w = {h * w}")
    else:
        raise ValueError(f"rle 'counts' must be str, bytes or a list, got {type(counts).__name__}")
    return mask_utils.decode(coco).astype(bool)


def _compressed_total(counts: bytes) -> int:
    """Sum of the run lengths in COCO's LEB128-like compressed counts (maskApi.c rleFrString)."""
    total, i, runs, n = 0, 0, [], len(counts)
    while i < n:
        x, k, more = 0, 0, True
        while more:
            if i >= n:
                raise ValueError("rle 'counts' string is truncated")
            c = counts[i] - 48
            if c < 0 or c > 63:
                raise ValueError("rle 'counts' string holds an invalid character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("rle 'counts' string decodes to a negative run")
        runs.append(x)
        total += x
    return total
