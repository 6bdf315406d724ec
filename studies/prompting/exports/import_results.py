"""Importing PointPrompt prompting results (`Prompting results/<Dataset>/st<k>/...`) as a study.

The reverse of `export_pointprompt`, for the round trip and for the released PointPrompt data:
each `st<k>` folder becomes participant `st<k>`, each image index with T > 0 timesteps an
assignment with one PromptEvent per timestep (points, score, 0-based round + 1, mask when the
`masks/` PNG exists). Files are read with the safe `.npy` loader (no arbitrary unpickling).
Actions are derived from the point-set difference (one point added -> add, one removed ->
remove, anything else -> add without coordinates). Indices with T = 0 get no assignment (the
layout cannot tell "assigned but untouched" from "not assigned").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone
from PIL import Image

from interventions.metrics import rle_encode
from studies.core.safe_npy import load_npy
from studies.models import Assignment, Dataset, ModelSpec, Participant, PromptEvent, Study
from studies.prompting.protocol import DEFAULT_PROTOCOL, State

CODE = re.compile(r"^st(\d+)$")


def _points(array, where: str) -> list[np.ndarray]:
    out = []
    for t, element in enumerate(array):
        pts = np.asarray(element)
        if pts.size == 0:
            pts = pts.reshape(0, 2)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(
                f"{where}[{t}]: expected an (n x 2) point array, got shape {pts.shape}"
            )
        if not np.issubdtype(pts.dtype, np.number) or not np.isfinite(pts.astype(np.float64)).all():
            raise ValueError(f"{where}[{t}]: points must be finite numbers")
        out.append(pts)
    return out


def _as_list(points: np.ndarray) -> list[list]:
    if np.issubdtype(points.dtype, np.integer):
        return [[int(x), int(y)] for x, y in points]
    return [[float(x), float(y)] for x, y in points]


def _derive_action(
    before: list, after: list, before_r: list, after_r: list
) -> tuple[str, str, float | None, float | None]:
    for mode, b, a in (("green", before, after), ("red", before_r, after_r)):
        other_same = (before_r == after_r) if mode == "green" else (before == after)
        if not other_same:
            continue
        if len(a) == len(b) + 1 and a[: len(b)] == b:
            return "add", mode, float(a[-1][0]), float(a[-1][1])
        if len(a) == len(b) - 1:
            removed = [p for p in b if p not in a]
            if len(removed) == 1:
                return "remove", mode, float(removed[0][0]), float(removed[0][1])
    return "add", "", None, None


def read_image_results(folder: Path, index: int, image) -> list[dict]:
    """The timesteps of one participant x image as dicts (validated)."""
    where = f"{folder.name} image {index}"
    green_file, red_file = (
        folder / "points" / f"{index}_green.npy",
        folder / "points" / f"{index}_red.npy",
    )
    score_file, round_file = (
        folder / "scores" / f"{index}score.npy",
        folder / "eachround" / f"{index}_.npy",
    )
    if not score_file.is_file():
        return []
    scores = load_npy(score_file)
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(
            f"{score_file.name}: scores must be a 1-D float array, got {scores.dtype} {scores.shape}"
        )
    T = len(scores)
    if image.scale != 1.0:  # results are in the full-size frame; the study's image is smaller
        raise ValueError(
            f"{where}: image {image.index} was stored as a working copy of {image.width} x "
            f"{image.height} pixels (original {image.original_width} x {image.original_height}); "
            "PointPrompt results are in the original's pixels: import the data set again with "
            f"IMPORT_MAX_SIDE at least {max(image.original_width or 0, image.original_height or 0)}"
        )
    green = _points(load_npy(green_file), green_file.name)
    red = _points(load_npy(red_file), red_file.name)
    rounds = load_npy(round_file) if round_file.is_file() else np.zeros(T, dtype=np.int64)
    if not (len(green) == len(red) == len(rounds) == T):
        raise ValueError(
            f"{where}: points ({len(green)}, {len(red)}), rounds ({len(rounds)}) and scores ({T}) differ in length"
        )
    rows = []
    for t in range(T):
        for pts, name in ((green[t], "green"), (red[t], "red")):
            if len(pts) and (
                (pts[:, 0] < 0).any()
                or (pts[:, 0] >= image.width).any()
                or (pts[:, 1] < 0).any()
                or (pts[:, 1] >= image.height).any()
            ):
                raise ValueError(
                    f"{where}: timestep {t} has {name} points outside the {image.width} x {image.height} image"
                )
        mask_file = folder / "masks" / f"{index}_{t}_mask.png"
        mask_rle = None
        if mask_file.is_file():
            with Image.open(mask_file) as im:
                mask = np.asarray(im.convert("L")) > 127
            if mask.shape != (image.height, image.width):
                raise ValueError(
                    f"{mask_file.name}: mask is {mask.shape}, image is {(image.height, image.width)}"
                )
            mask_rle = rle_encode(mask)
        score = float(scores[t])
        if not np.isfinite(score):
            raise ValueError(f"{where}: score of timestep {t} is not finite")
        rows.append(
            {
                "green": _as_list(green[t]),
                "red": _as_list(red[t]),
                "iou": score,
                "round": int(rounds[t]) + 1,
                "mask_rle": mask_rle,
            }
        )
    return rows


def check_sort(folder: Path, index: int, n: int) -> None:
    """`sorts/<i>_sort.npy`, when present, must order the image's n timesteps (a permutation of
    0..n-1); the importer does not use it otherwise (the analysis takes the first best)."""
    sort_file = folder / "sorts" / f"{index}_sort.npy"
    if not sort_file.is_file():
        return
    order = load_npy(sort_file)
    if (
        order.ndim != 1
        or not np.issubdtype(order.dtype, np.integer)
        or sorted(order.tolist()) != list(range(n))
    ):
        raise ValueError(
            f"{sort_file.name}: expected an ordering of the {n} timesteps (0..{n - 1}), "
            f"got {order.dtype} {order.shape}"
        )


@transaction.atomic
def import_pointprompt_results(
    results_dir: str | Path,
    dataset: Dataset,
    model: ModelSpec,
    owner,
    title: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Study:
    """Create a read-only prompting study (imported human results, `Study.imported_from`) on
    `dataset` from a `Prompting results/<Dataset>` folder. Errors name the participant folder
    and the file; nothing is stored unless every file reads."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir} is not a folder")
    folders = sorted(
        (int(CODE.match(p.name).group(1)), p)
        for p in results_dir.iterdir()
        if p.is_dir() and CODE.match(p.name)
    )
    if not folders:
        raise ValueError(f"{results_dir} has no st<k> participant folders")
    images = {im.index: im for im in dataset.images.all()}
    study = Study.objects.create(
        kind="prompting",
        title=title or f"Imported results: {dataset.name}",
        dataset=dataset,
        model=model,
        owner=owner,
        status="closed",
        allow_public_join=False,
        imported_from=str(results_dir)[:500],
        protocol=dict(DEFAULT_PROTOCOL),
        instructions=f"Imported from {results_dir}",
    )
    now = timezone.now()
    total, done = len(folders) * len(images), 0
    for number, folder in folders:
        participant = Participant.objects.create(study=study, number=number, code=f"st{number}")
        indices = sorted(
            int(m.group(1))
            for p in (folder / "scores").glob("*score.npy")
            if (m := re.match(r"^(\d+)score\.npy$", p.name))
        )
        order = 0
        for index in indices:
            if index not in images:
                raise ValueError(
                    f"{folder.name}: results for image {index}, but {dataset.name!r} has {len(images)} images"
                )
            try:
                rows = read_image_results(folder, index, images[index])
                check_sort(folder, index, len(rows))
            except ValueError as exc:
                if str(exc).startswith(folder.name):
                    raise
                raise ValueError(f"{folder.name}: {exc}") from exc
            done += 1
            if progress:
                progress(done, total)
            if not rows:
                continue
            assignment = Assignment.objects.create(
                participant=participant, image=images[index], order=order, status="finished",
                started_at=now, finished_at=now, next_seq=len(rows),
            )  # fmt: skip
            order += 1
            events, before_g, before_r = [], [], []
            for t, row in enumerate(rows):
                action, mode, x, y = _derive_action(before_g, row["green"], before_r, row["red"])
                events.append(
                    PromptEvent(
                        assignment=assignment, seq=t, client_event_id=f"import:{t}", action=action, mode=mode,
                        x=x, y=y, server_ts=now, timestep=t, round=row["round"], green=row["green"],
                        red=row["red"], mask_rle=row["mask_rle"], iou=row["iou"], model_id="imported",
                        response={},
                    )
                )  # fmt: skip
                before_g, before_r = row["green"], row["red"]
            PromptEvent.objects.bulk_create(events)
            last = rows[-1]
            assignment.state = State(
                round=last["round"], green=tuple(map(tuple, last["green"])), red=tuple(map(tuple, last["red"])),
                timesteps=len(rows), finished=True,
            ).to_json()  # fmt: skip
            assignment.save(update_fields=["state"])
    if progress:
        progress(total, total)
    return study
