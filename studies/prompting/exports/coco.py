"""COCO annotations (docs/design.md "Exports"): the final and the best mask of every scored assignment.

One `annotations.json` in the COCO format (Lin et al., 2014) with RLE segmentations; images are
the data set's (id = index), one category (the data set's object). Extra fields per annotation
say whose mask it is: participant, assignment, kind (`final` / `best` / `baseline`), timestep,
round, iou. Automated baseline masks are included with kind `baseline` and their strategy.
Streamed: the annotation list is written one annotation at a time; the timesteps are read
without their masks and only the two masks written per assignment are read (`final_and_best`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from django.db import connection
from django.db.models import F
from pycocotools import mask as mask_utils

from studies.core.design import has_design
from studies.core.exports.archive import ExportArchive
from studies.models import Assignment, BaselineResult, DatasetImage, PromptEvent, Study
from studies.prompting.analysis import best_position
from studies.prompting.exports.records import CHUNK, dataset_indices, study_assignment_timesteps

Progress = Callable[[int, int], None]


def rle_geometry(rle: dict) -> tuple[int, list[float]]:
    coco = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return int(mask_utils.area(coco)), [float(v) for v in mask_utils.toBbox(coco)]


def annotation(ann_id: int, image_index: int, rle: dict, **extra) -> dict:
    area, bbox = rle_geometry(rle)
    return {
        "id": ann_id,
        "image_id": image_index,
        "category_id": 1,
        "segmentation": rle,
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
        **extra,
    }


def coco_image(im: dict) -> dict:
    """A COCO image entry: the researcher's file name when the data set has one (else
    `<index>.png`); width and height are the working copy's, the frame of every segmentation;
    an image scaled from a larger original also gives the original's size."""
    entry = {
        "id": im["index"],
        "file_name": im["original_name"] or f"{im['index']}.png",
        "width": im["width"],
        "height": im["height"],
    }
    if im["original_width"]:
        entry.update(original_width=im["original_width"], original_height=im["original_height"])
    return entry


PICK_FIELDS = ("pk", "assignment_id", "seq", "timestep", "round", "iou")
MASK_CHUNK = 500  # events per query for their masks (SQLite's limit on query parameters)


def final_and_best(study: Study) -> Iterator[tuple[int, list[tuple[str, dict]]]]:
    """(assignment id, [("final", row), ("best", row)]) of each real assignment with timesteps,
    in assignment order; a row has the fields of PICK_FIELDS and `mask_rle`.

    The timesteps are read without their masks (the largest column); only the two masks
    written per assignment are then read, by primary key, a few hundred at a time. On
    PostgreSQL the database picks the two rows itself (DISTINCT ON), the same rows."""
    if connection.vendor == "postgresql":
        yield from _final_and_best_distinct_on(study)
        return
    steps = study_assignment_timesteps(study, fields=PICK_FIELDS)
    while True:
        batch = []
        for assignment_id, rows in steps:
            best = rows[best_position([r["iou"] for r in rows])]
            batch.append((assignment_id, [("final", rows[-1]), ("best", best)]))
            if len(batch) * 2 >= MASK_CHUNK:
                break
        if not batch:
            return
        wanted = {row["pk"] for _, picked in batch for _, row in picked}
        masks = dict(
            PromptEvent.objects.filter(pk__in=wanted).values_list("pk", "mask_rle").iterator()
        )
        for assignment_id, picked in batch:
            yield (
                assignment_id,
                [(kind, {**row, "mask_rle": masks[row["pk"]]}) for kind, row in picked],
            )


def _final_and_best_distinct_on(study: Study):
    """final_and_best on PostgreSQL: per assignment the last timestep (highest seq) and the
    best (highest IoU, the lowest seq among equals: `best_position`'s first on ties)."""
    steps = PromptEvent.objects.filter(
        assignment__participant__study=study, assignment__practice=False, timestep__isnull=False
    )
    fields = (*PICK_FIELDS, "mask_rle")
    final = (
        steps.order_by("assignment_id", "-seq").distinct("assignment_id").values(*fields)
    ).iterator(chunk_size=2000)
    best = (
        steps.order_by("assignment_id", F("iou").desc(nulls_last=True), "seq")
        .distinct("assignment_id")
        .values(*fields)
    ).iterator(chunk_size=2000)
    for last, top in zip(final, best, strict=True):
        if last["assignment_id"] != top["assignment_id"]:
            raise RuntimeError("final and best rows out of step")  # the same assignments
        yield last["assignment_id"], [("final", last), ("best", top)]


def export_coco(study: Study, archive: ExportArchive, progress: Progress | None = None) -> dict:
    dataset = study.dataset
    dataset_indices(study)
    meta = {
        a["pk"]: a
        for a in Assignment.objects.real()
        .filter(participant__study=study)
        .values("pk", "participant__code", "image__index", "arm")
    }
    # a study with a design: each image record lists the arms it ran in, each annotation its
    # assignment's arm (docs/experiments.md); others keep their bytes
    arms_of: dict[int, set] | None = {} if has_design(study) else None
    if arms_of is not None:
        for a in meta.values():
            arms_of.setdefault(a["image__index"], set()).add(a["arm"])
    total = len(meta)
    images = [
        coco_image(im)
        if arms_of is None
        else {**coco_image(im), "arms": sorted(arms_of.get(im["index"], ()) - {""})}
        for im in DatasetImage.objects.filter(dataset=dataset)
        .order_by("index")
        .values("index", "width", "height", "original_name", "original_width", "original_height")
    ]
    head = {
        "info": {
            "description": f"{study.title}: final and best masks per assignment",
            "study_id": study.pk,
        },
        "images": images,
        "categories": [{"id": 1, "name": dataset.name, "supercategory": "object"}],
    }
    counts = {
        "images": len(images),
        "annotations": 0,
        "assignments_with_masks": 0,
        "baseline_annotations": 0,
    }
    with archive.open_text("annotations.json") as out:
        out.write(json.dumps(head)[:-1] + ', "annotations": [')
        ann_id = 0

        def emit(ann: dict) -> None:
            nonlocal ann_id
            out.write(("\n" if ann_id == 0 else ",\n") + json.dumps(ann, separators=(",", ":")))
            ann_id += 1

        done = 0
        for assignment_id, rows in final_and_best(study):
            a = meta[assignment_id]
            for kind, row in rows:
                emit(
                    annotation(
                        ann_id + 1, a["image__index"], row["mask_rle"], kind=kind,
                        participant=a["participant__code"], assignment_id=assignment_id,
                        timestep=row["timestep"], round=row["round"], iou=row["iou"],
                        **({"arm": a["arm"]} if arms_of is not None else {}),
                    )
                )  # fmt: skip
            counts["assignments_with_masks"] += 1
            done += 1
            if progress:
                progress(done, total)
        for row in (
            BaselineResult.objects.filter(study=study, mask_rle__isnull=False)
            .order_by("strategy", "seed", "image__index", "assignment_id")
            .values(
                "image__index",
                "mask_rle",
                "strategy",
                "seed",
                "count_source",
                "assignment_id",
                "iou",
            )
            .iterator(chunk_size=CHUNK)
        ):
            emit(
                annotation(
                    ann_id + 1, row["image__index"], row["mask_rle"], kind="baseline", strategy=row["strategy"],
                    seed=row["seed"], count_source=row["count_source"], assignment_id=row["assignment_id"],
                    iou=row["iou"],
                )
            )  # fmt: skip
            counts["baseline_annotations"] += 1
        counts["annotations"] = ann_id
        out.write("\n]}\n")
    if progress:
        progress(total, total)
    return counts
