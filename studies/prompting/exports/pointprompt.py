"""The PointPrompt layout (docs/design.md "Exports"), so the public PointPrompt scripts read our studies.

Image datasets/<D>/samples.npy, labels.npy     object arrays of uint8 images / {0, 1} labels
Prompting results/<D>/st<k>/points/<i>_green.npy, <i>_red.npy   object (T,), element t = int64 (n_t x 2)
                           scores/<i>score.npy float64 (T,), sorts/<i>_sort.npy int64 (T,)
                           eachround/<i>_.npy int64 (T,) 0-based rounds, masks/<i>_<t>_mask.png 0/255
finetune/samples/<D>/<i>_sample.npy, finetune/labels/<D>/<i>_label.npy,
finetune/human/<D>/st<k>_<i>_green.npy, _red.npy   points of the best timestep (T > 0 only)

Every participant gets files for every image index 0..N-1 (empty when never scored), also
for the images the participant was never assigned: the released layout indexes a participant's
files by image position and the released feature script counts a folder's `eachround` files to
know how many images to read (docs/pointprompt.md "Exports at PointPrompt size"). The five
empty arrays of such a cell are the same bytes every time, so they are made once per export.

With `with_stats`, also stats.csv at the root: the released feature script's table
(interventions/pointprompt/features.py, docs/pointprompt.md), computed from the same arrays the
archive holds, and a manifest block `stats` naming the definitions. The study must have
timesteps and every ground truth an object; that is checked before anything is written.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np

from interventions.metrics import rle_decode
from studies.core.exports.archive import ExportArchive
from studies.core.exports.npy import write_npy
from studies.models import DatasetImage, PromptEvent, Study
from studies.prompting.exports.records import (
    dataset_indices,
    load_image,
    load_label,
    participant_timesteps,
    points_int,
)

Progress = Callable[[int, int], None]


def decoded(rle: dict) -> np.ndarray:
    """The mask of a stored RLE as uint8 0/1 (H x W). A compressed-string RLE, as the platform
    stores every mask it computed, is decoded by pycocotools' C code (a fifth of the
    PointPrompt export's time at 200,000 timesteps went to decoding in numpy); when
    pycocotools does not accept it, by `rle_decode`, which checks and names the problem."""
    counts, size = rle.get("counts"), rle.get("size")
    if type(counts) is str and isinstance(size, list) and len(size) == 2:
        from pycocotools import mask as mask_utils

        try:
            mask = mask_utils.decode(
                {"size": [int(size[0]), int(size[1])], "counts": counts.encode("ascii")}
            )
        except (ValueError, TypeError, UnicodeEncodeError, OverflowError):
            mask = None
        if mask is not None and mask.shape == (int(size[0]), int(size[1])):
            return mask
    return rle_decode(rle).astype(np.uint8)


def mask_png(rle: dict) -> bytes:
    mask = decoded(rle) * 255
    ok, encoded = cv2.imencode(".png", mask)
    if not ok:
        raise ValueError("could not encode a mask as PNG")
    return encoded.tobytes()


def point_sets(rows: list[dict], colour: str) -> np.ndarray:
    array = np.empty(len(rows), dtype=object)
    for t, row in enumerate(rows):
        array[t] = points_int(row[colour])
    return array


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    write_npy(buffer, array)
    return buffer.getvalue()


def empty_cell() -> tuple[tuple[str, bytes], ...]:
    """The five files of a participant x image without timesteps: (path pattern, bytes), in the
    order write_results writes them (the bytes np.save gives the empty arrays)."""
    points = npy_bytes(np.empty(0, dtype=object))
    ints = npy_bytes(np.empty(0, dtype=np.int64))
    return (
        ("{base}/points/{index}_green.npy", points),
        ("{base}/points/{index}_red.npy", points),
        ("{base}/scores/{index}score.npy", npy_bytes(np.empty(0, dtype=np.float64))),
        ("{base}/sorts/{index}_sort.npy", ints),
        ("{base}/eachround/{index}_.npy", ints),
    )


def write_results(
    archive: ExportArchive,
    base: str,
    index: int,
    rows: list[dict],
    where: str,
    empty: tuple[tuple[str, bytes], ...] | None = None,
) -> np.ndarray:
    """One participant x image: points, scores, sorts, rounds, masks. Returns the scores.
    `empty`: the files of a cell without timesteps (`empty_cell()`), made once by the caller."""
    if not rows:
        for pattern, data in empty or empty_cell():
            archive.write_bytes(pattern.format(base=base, index=index), data)
        return np.empty(0, dtype=np.float64)
    for t, row in enumerate(rows):
        if row["timestep"] != t:
            raise ValueError(
                f"{where}: timesteps are not contiguous (found {row['timestep']} at position {t})"
            )
        if row["mask_rle"] is None or row["iou"] is None:
            raise ValueError(f"{where}: timestep {t} has no mask or score")
    scores = np.asarray([row["iou"] for row in rows], dtype=np.float64)
    archive.write_npy(f"{base}/points/{index}_green.npy", point_sets(rows, "green"))
    archive.write_npy(f"{base}/points/{index}_red.npy", point_sets(rows, "red"))
    archive.write_npy(f"{base}/scores/{index}score.npy", scores)
    archive.write_npy(
        f"{base}/sorts/{index}_sort.npy", np.argsort(-scores, kind="stable").astype(np.int64)
    )
    archive.write_npy(
        f"{base}/eachround/{index}_.npy",
        np.asarray([row["round"] - 1 for row in rows], dtype=np.int64),
    )
    for t, row in enumerate(rows):
        png = mask_png(row["mask_rle"])  # deflated already: stored as it is
        archive.write_bytes(f"{base}/masks/{index}_{t}_mask.png", png, compress=False)
    return scores


def stats_contexts(study: Study, images) -> list:
    """Each image's feature context (data-level columns, mask geometry), or ValueError naming
    what the released feature script cannot take: no timestep at all, an empty ground truth."""
    from interventions.pointprompt.features import prepare_image

    has_timesteps = PromptEvent.objects.filter(
        assignment__participant__study=study, assignment__practice=False, timestep__isnull=False
    ).exists()
    if not has_timesteps:
        raise ValueError(
            f"study {study.pk} has no timesteps: stats.csv (--with-stats) needs at least one"
        )
    return [prepare_image(load_image(im), load_label(im), im.index) for im in images.iterator()]


def attempt_of(rows: list[dict], scores: np.ndarray):
    """The arrays write_results wrote for one participant x image, as a features.Attempt."""
    from interventions.pointprompt.features import Attempt

    return Attempt(
        rounds=np.asarray([row["round"] - 1 for row in rows], dtype=np.int64),
        sort=np.argsort(-scores, kind="stable").astype(np.int64),
        scores=scores,
        green=list(point_sets(rows, "green")),
        red=list(point_sets(rows, "red")),
    )


def write_stats(archive: ExportArchive, name: str, contexts: list, folders: list) -> dict:
    """stats.csv (released definitions) and the manifest's `stats` block."""
    from interventions.pointprompt.features import (
        DEFINITIONS,
        released_object_counts,
        released_stats,
        write_stats_csv,
    )

    table = released_stats(name, contexts, folders)
    with archive.open_text("stats.csv") as out:
        n = write_stats_csv(table, out)
    block = {
        "file": "stats.csv",
        "variant": table.variant,
        "definitions": DEFINITIONS[table.variant],
        "rows": n,
        "columns": len(table.columns),
        "row_order": "participant folders by participant number, then image index, timestep",
        "student_column": "Prompting results/<data set>/<participant code>, as the script names it",
        "obj_density": (
            "PointPrompt's released object_counts.csv"
            if released_object_counts(name) is not None
            else "1 for every image (not a PointPrompt data set; no per-image counts given)"
        ),
    }
    return {"stats_rows": n, "manifest_blocks": {"stats": block}}


def export_pointprompt(
    study: Study,
    archive: ExportArchive,
    progress: Progress | None = None,
    with_stats: bool = False,
) -> dict:
    """Write the study in the PointPrompt layout; return counts for the manifest."""
    from interventions.pointprompt.features import Folder
    from studies.prompting.exports.tidy import write_baselines_csv

    name = study.dataset.name
    indices = dataset_indices(study)
    n_images = len(indices)
    participants = list(study.participants.order_by("number").values_list("pk", "code"))
    total = len(participants) * n_images
    images = DatasetImage.objects.filter(dataset=study.dataset).order_by("index")
    contexts = stats_contexts(study, images) if with_stats else None
    folders: list = []

    archive.write_object_npy(
        f"Image datasets/{name}/samples.npy", n_images, (load_image(im) for im in images.iterator())
    )
    archive.write_object_npy(
        f"Image datasets/{name}/labels.npy", n_images, (load_label(im) for im in images.iterator())
    )
    for image in images.iterator():
        archive.write_npy(f"finetune/samples/{name}/{image.index}_sample.npy", load_image(image))
        archive.write_npy(f"finetune/labels/{name}/{image.index}_label.npy", load_label(image))

    done = timesteps = scored = 0
    empty = empty_cell()
    if progress:
        progress(0, total)
    for participant_id, code in participants:
        base = f"Prompting results/{name}/{code}"
        stream = participant_timesteps(participant_id)
        pending = next(stream, None)
        attempts = []
        for index in range(n_images):
            rows: list[dict] = []
            if pending is not None and pending[0] == index:
                rows = pending[1]
                pending = next(stream, None)
            scores = write_results(archive, base, index, rows, f"{code} image {index}", empty)
            if with_stats:
                attempts.append(attempt_of(rows, scores))
            if len(rows):
                best = rows[int(np.argsort(-scores, kind="stable")[0])]
                archive.write_npy(
                    f"finetune/human/{name}/{code}_{index}_green.npy", points_int(best["green"])
                )
                archive.write_npy(
                    f"finetune/human/{name}/{code}_{index}_red.npy", points_int(best["red"])
                )
                scored += 1
            timesteps += len(rows)
            done += 1
            if progress:
                progress(done, total)
        if pending is not None:
            raise ValueError(f"{code}: timesteps on image index {pending[0]} outside the data set")
        if with_stats:
            folders.append(Folder(code, attempts))
    baselines = write_baselines_csv(archive, f"Automated baselines/{name}/baselines.csv", study)
    counts = {
        "images": n_images,
        "participants": len(participants),
        "participant_images": total,
        "scored_participant_images": scored,
        "timesteps": timesteps,
        "baseline_results": baselines,
    }
    if with_stats:
        counts.update(write_stats(archive, name, contexts, folders))
    return counts
