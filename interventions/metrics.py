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
    """Bool (h, w) mask from a COCO RLE dict (compressed str/bytes counts or uncompressed list).

    Runs alternate 0/1 starting with 0, in column-major order (COCO, Lin et al., 2014). Decoding
    is linear in the input and in h * w; a run or a total past h * w is rejected before any
    pixel is written, so a hostile string costs no more than reading it.
    """
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
        if len(counts) > h * w + 1 or not all(
            isinstance(c, int | np.integer) and not isinstance(c, bool) and 0 <= c <= h * w
            for c in counts
        ):
            raise ValueError(f"rle 'counts' list must hold integers in [0, h * w = {h * w}]")
        runs = np.asarray([int(c) for c in counts], dtype=np.int64)
    elif isinstance(counts, str | bytes):
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                raise ValueError("rle 'counts' string holds an invalid character") from None
        runs = compressed_runs(counts, h * w)
    else:
        raise ValueError(f"rle 'counts' must be str, bytes or a list, got {type(counts).__name__}")
    total = int(runs.sum())
    if total != h * w:
        raise ValueError(f"rle 'counts' cover {total} pixels, expected h * w = {h * w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(w, h).T


# A run is at most h * w; 12 characters carry 60 bits, more than any image has pixels.
_MAX_CHARS_PER_RUN = 12


def compressed_runs(counts: bytes, limit: int) -> np.ndarray:
    """Run lengths of COCO's compressed counts (maskApi.c rleFrString), vectorised.

    Each value is 5 bits per character (offset 48, bit 0x20 = more, 0x10 of the last one = sign);
    from the fourth value on it is a delta to the run two before. Raises ValueError for a bad
    character, a truncated string, a value longer than 12 characters, a negative run, or any
    run or running total above `limit` (h * w).
    """
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if np.any((c < 0) | (c > 63)):
        raise ValueError("rle 'counts' string holds an invalid character")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("rle 'counts' string is truncated")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_CHARS_PER_RUN:
        raise ValueError("rle 'counts' string holds a run longer than the image")
    if len(ends) > limit + 1:
        raise ValueError(f"rle 'counts' string holds more runs than h * w = {limit} pixels")
    # position of each character inside its value
    k = np.arange(c.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * lengths)), x)
    if np.any(np.abs(x) > limit):
        raise ValueError(f"rle 'counts' string holds a run above h * w = {limit}")
    runs = x.copy()
    # runs[i] = x[i] + runs[i - 2] for i >= 3: cumulative sums over each parity from index 2/1
    runs[2::2] = np.cumsum(x[2::2])
    runs[1::2] = np.cumsum(x[1::2])
    if np.any(runs < 0):
        raise ValueError("rle 'counts' string decodes to a negative run")
    if np.any(runs > limit) or np.any(np.cumsum(runs) > limit):
        raise ValueError(f"rle 'counts' string covers more than h * w = {limit} pixels")
    return runs
