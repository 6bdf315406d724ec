"""Reading a study's log as a stream of plain rows (no model instances, constant memory).

A practice assignment (`Assignment.practice`) is not study data: the readers leave its events
out unless asked (`include_practice`, the tidy export's parameter)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby

import numpy as np
from PIL import Image

from studies.models import DatasetImage, PromptEvent, Study

CHUNK = 2000

TIMESTEP_FIELDS = (
    "assignment_id",
    "assignment__image__index",
    "seq",
    "timestep",
    "round",
    "green",
    "red",
    "iou",
    "predicted_iou",
    "mask_index",
    "mask_rle",
    "model_id",
    "latency_ms",
    "server_ts",
)


def dataset_indices(study: Study) -> list[tuple[int, int]]:
    """(index, image pk) of the study's data set, checked to be contiguous 0..N-1."""
    rows = list(
        DatasetImage.objects.filter(dataset=study.dataset)
        .order_by("index")
        .values_list("index", "pk")
    )
    for expected, (index, _) in enumerate(rows):
        if index != expected:
            raise ValueError(
                f"data set {study.dataset.name!r}: image indices are not contiguous (missing {expected})"
            )
    return rows


# the timestep fields without the mask (the largest column: a JSON RLE per row), for the
# passes that do not write masks
TIMESTEP_FIELDS_NO_MASK = tuple(f for f in TIMESTEP_FIELDS if f != "mask_rle")


def timestep_rows(events, fields=TIMESTEP_FIELDS) -> Iterator[dict]:
    """Timestep rows (events that produced a prediction) of a PromptEvent queryset, streamed."""
    query = events.filter(timestep__isnull=False).values(*fields)
    yield from query.iterator(chunk_size=CHUNK)


def participant_timesteps(participant_id: int) -> Iterator[tuple[int, list[dict]]]:
    """(image index, timesteps in order) for each image the participant has timesteps on
    (the practice image left out)."""
    events = PromptEvent.objects.filter(
        assignment__participant_id=participant_id, assignment__practice=False
    ).order_by("assignment__image__index", "seq")
    for index, rows in groupby(
        timestep_rows(events), key=lambda row: row["assignment__image__index"]
    ):
        yield index, list(rows)


def study_assignment_timesteps(
    study: Study, include_practice: bool = False, fields=TIMESTEP_FIELDS
) -> Iterator[tuple[int, list[dict]]]:
    """(assignment id, timesteps in order) over the whole study, ordered by assignment;
    practice assignments only when `include_practice`; `fields` of each row (the default: all
    of TIMESTEP_FIELDS)."""
    events = PromptEvent.objects.filter(assignment__participant__study=study)
    if not include_practice:
        events = events.filter(assignment__practice=False)
    events = events.order_by("assignment_id", "seq")
    rows_ = timestep_rows(events, fields)
    for assignment_id, rows in groupby(rows_, key=lambda row: row["assignment_id"]):
        yield assignment_id, list(rows)


def _read(field):
    """A stored file opened for reading; with object storage through this machine's bounded
    read-through copy (exports and analyses run in workers, which read each image many times)."""
    from studies.core import storage

    if storage.remote():
        return storage.local_copy("media", field.name).open("rb")
    return field.open("rb")


def load_image(image: DatasetImage) -> np.ndarray:
    """The stored image as uint8 H x W x 3."""
    with _read(image.image) as handle, Image.open(handle) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_label(image: DatasetImage) -> np.ndarray:
    """The stored ground truth as uint8 H x W with values {0, 1}."""
    with _read(image.mask) as handle, Image.open(handle) as im:
        return (np.asarray(im.convert("L")) > 127).astype(np.uint8)


def points_int(points) -> np.ndarray:
    """(n x 2) int64 (x, y): floor of each coordinate, the pixel the click fell in."""
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.floor(array).astype(np.int64)
