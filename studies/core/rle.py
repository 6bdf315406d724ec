"""A COCO RLE sent by a participant's browser, checked and decoded: one place for every kind
(intervention regions, the mask a prompting page displayed). numpy + pycocotools, no torch."""

from __future__ import annotations

import numpy as np

from studies.core.api_errors import ApiError

MAX_RLE_CHARS = 2_000_000


def decode_rle_field(value: object, width: int, height: int, field: str) -> np.ndarray:
    """The bool (height, width) mask of a client's `{size: [h, w], counts}` RLE at the image
    size; ApiError(400) naming `field` for anything else (nothing else is accepted)."""
    from interventions.metrics import rle_decode

    if value is None:
        raise ApiError(400, f"field {field} is required ({{size: [h, w], counts}})", field=field)
    if (
        not isinstance(value, dict)
        or set(value) - {"size", "counts"}
        or not {"size", "counts"} <= set(value)
    ):
        raise ApiError(
            400, f"field {field} must be an object with exactly size and counts", field=field
        )
    size = value["size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise ApiError(
            400, f"field {field}.size must be [height, width] (two integers)", field=field
        )
    if size != [height, width]:
        raise ApiError(
            400,
            f"field {field}.size {size} differs from the image size [{height}, {width}] (height, width)",
            field=field,
        )
    counts = value["counts"]
    if isinstance(counts, str):
        if len(counts) > MAX_RLE_CHARS:
            raise ApiError(400, f"field {field}.counts is too long", field=field)
    elif isinstance(counts, list):
        if len(counts) > height * width + 1 or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in counts
        ):
            raise ApiError(
                400, f"field {field}.counts must be a string or a list of integers", field=field
            )
    else:
        raise ApiError(
            400,
            f"field {field}.counts must be a string (compressed) or a list of run lengths",
            field=field,
        )
    try:
        return rle_decode({"size": size, "counts": counts})
    except Exception as exc:  # pycocotools and our checks: every malformed RLE is the input's fault
        raise ApiError(
            400, f"field {field} is not a valid COCO RLE of this image: {exc}", field=field
        ) from None
