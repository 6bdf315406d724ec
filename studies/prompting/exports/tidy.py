"""Tidy tables (docs/design.md "Exports"): events, timesteps (with prompt features), assignments (with
the overprompting figures), participants (pseudonymous: no external ids, no tokens), trials,
baselines, and every timestep's mask as COCO RLE in masks.jsonl. One pass per table, streamed.

Practice assignments (`Assignment.practice`) and their events, timesteps, masks and trials are
left out, unless the export's `include_practice` parameter is true: then they are written too,
and every per-assignment table (and masks.jsonl, the kinds' own tables) gains a `practice`
column (true / false). Without the parameter no table changes its columns, so exports of
studies without practice images keep their bytes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from django.db.models import Max, Min

from studies.core.design import has_design, method
from studies.core.exports.archive import ExportArchive
from studies.core.exports.tables import write_csv
from studies.core.image_names import (
    IMAGE_COLUMNS,
    has_provenance,
    image_names,
    image_rows,
    insert_after,
)
from studies.core.kinds import kind_of
from studies.core.quality import attention_status
from studies.models import (
    Assignment,
    BaselineResult,
    DatasetImage,
    InterventionTrial,
    Participant,
    PromptEvent,
    Study,
)
from studies.prompting.analysis import (
    FEATURE_NAMES,
    assignment_figures,
    assignment_log,
    prompt_features,
)
from studies.prompting.exports.records import (
    CHUNK,
    TIMESTEP_FIELDS_NO_MASK,
    load_label,
    study_assignment_timesteps,
)

Progress = Callable[[int, int], None]

EVENT_FIELDS = (
    "assignment__participant__code", "assignment_id", "assignment__image__index", "seq", "client_event_id",
    "action", "mode", "x", "y", "client_ts", "server_ts", "timestep", "round", "green", "red", "iou",
    "predicted_iou", "mask_index", "model_id", "latency_ms", "stagnation", "round_ended", "finished",
    "stop_reason",
)  # fmt: skip
# What the participant saw before the server's answer (docs/browser_decoder.md). events.csv has
# these columns, at the end, only when the study has an event with a shown mask, so exports of
# studies that never used the browser decoder keep their bytes; the manifest's
# counts.events_with_shown says how many events have them (absent: no such columns).
SHOWN_EVENT_FIELDS = ("shown_mask_sha256", "shown_iou_vs_server", "client_latency_ms")
# Which input placed each point ("pointer" / "keyboard", docs/workspace.md "Keys"): events.csv
# and trials.csv end with an `input` column only when the study has a row that says it, so
# exports of data logged before the field keep their bytes; the manifest's
# counts.events_with_input / trials_with_input say how many rows do.
INPUT_FIELDS = ("input",)
TIMESTEP_COLUMNS = (
    "participant", "assignment_id", "image_index", "timestep", "seq", "round", "n_green", "n_red", "green",
    "red", "iou", "predicted_iou", "mask_index", "model_id", "latency_ms", "server_ts", *FEATURE_NAMES[2:],
)  # fmt: skip
BASELINE_COLUMNS = (
    "strategy", "seed", "count_source", "image_index", "assignment_id", "participant", "n_green", "n_red",
    "green", "red", "iou", "predicted_iou", "mask_index", "model_id",
)  # fmt: skip


MASK_FIELDS = ("assignment_id", "seq", "timestep", "mask_rle")  # what masks.jsonl writes
GROUND_TRUTH_BUDGET = 32 << 20  # bytes of bit-packed ground truths kept for the export


class GroundTruths:
    """The study's ground truths as bool masks by image id, for the features of every timestep.

    Kept bit-packed (1 bit a pixel) and least recently used first out once they pass
    GROUND_TRUTH_BUDGET bytes: a PointPrompt-size study (6,000 images of 128 x 128) fits
    whole in 12 MB, so each mask is decoded once, not once per assignment (timesteps come in
    assignment order, which visits the images again and again); a data set of larger images
    keeps memory bounded and decodes some again."""

    def __init__(self, study: Study, budget: int = GROUND_TRUTH_BUDGET):
        self.files = dict(
            DatasetImage.objects.filter(dataset=study.dataset).values_list("pk", "mask")
        )
        self.budget = budget
        self.kept: OrderedDict[int, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()
        self.size = 0

    def __call__(self, image_id: int) -> np.ndarray:
        hit = self.kept.get(image_id)
        if hit is not None:
            self.kept.move_to_end(image_id)
            packed, shape = hit
            return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)
        gt = load_label(DatasetImage(pk=image_id, mask=self.files[image_id])).astype(bool)
        packed = np.packbits(gt)
        self.kept[image_id] = (packed, gt.shape)
        self.size += packed.nbytes
        while self.size > self.budget and len(self.kept) > 1:
            _, (old, _) = self.kept.popitem(last=False)
            self.size -= old.nbytes
        return gt


def write_baselines_csv(archive: ExportArchive, name: str, study: Study) -> int:
    rows = (
        {
            **row,
            "image_index": row["image__index"],
            "participant": row["assignment__participant__code"],
        }
        for row in BaselineResult.objects.filter(study=study)
        .order_by("strategy", "seed", "image__index", "assignment_id")
        .values(
            *[c for c in BASELINE_COLUMNS if c not in ("image_index", "participant")],
            "image__index",
            "assignment__participant__code",
        )  # fmt: skip
        .iterator(chunk_size=CHUNK)
    )
    return write_csv(archive, name, BASELINE_COLUMNS, rows)


FEATURE_POOL_MIN = 50_000  # timesteps: below this the pool's start-up costs more than it saves
FEATURE_TASK = 2_000  # timesteps per pool task
FEATURE_WORKERS = 2


def with_features(steps, meta: dict, ground_truth, n_steps: int):
    """(assignment id, timestep rows, their prompt features) in the order of `steps`. A large
    study computes the features in FEATURE_WORKERS spawned processes (Django-free:
    analysis.features_of), while this process reads the log and writes the CSV; the same
    values in the same order. Where no process can be started (a daemonic worker), or for a
    small study, here."""
    if n_steps < FEATURE_POOL_MIN:
        for assignment_id, rows in steps:
            gt = ground_truth(meta[assignment_id]["image_id"])
            yield assignment_id, rows, [prompt_features(r["green"], r["red"], gt) for r in rows]
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    from studies.prompting.analysis import features_of

    try:
        pool = ProcessPoolExecutor(FEATURE_WORKERS, mp_context=multiprocessing.get_context("spawn"))
    except (AssertionError, OSError):  # e.g. daemonic processes may not have children
        yield from with_features(steps, meta, ground_truth, 0)
        return
    with pool:
        pending: deque = deque()

        def tasks():
            batch, items, size = [], [], 0
            for assignment_id, rows in steps:
                gt = ground_truth(meta[assignment_id]["image_id"])
                batch.append((assignment_id, rows))
                items.append((gt.shape, np.packbits(gt), [(r["green"], r["red"]) for r in rows]))
                size += len(rows)
                if size >= FEATURE_TASK:
                    yield batch, items
                    batch, items, size = [], [], 0
            if batch:
                yield batch, items

        for batch, items in tasks():
            pending.append((batch, pool.submit(features_of, items)))
            while len(pending) > 2 * FEATURE_WORKERS:
                done, future = pending.popleft()
                for (assignment_id, rows), features in zip(done, future.result(), strict=True):
                    yield assignment_id, rows, features
        while pending:
            done, future = pending.popleft()
            for (assignment_id, rows), features in zip(done, future.result(), strict=True):
                yield assignment_id, rows, features


def export_tidy(
    study: Study,
    archive: ExportArchive,
    progress: Progress | None = None,
    include_practice: bool = False,
) -> dict:
    """Write the tidy tables; return counts for the manifest. `include_practice`: write the
    practice assignments too, with a `practice` column in each per-assignment table."""
    in_study = Assignment.objects.filter(participant__study=study)
    if not include_practice:
        in_study = in_study.real()
    # the `practice` column, only when practice assignments are asked for
    practice = ("practice",) if include_practice else ()
    # the `arm` column (docs/experiments.md), only in studies with a design: others keep bytes
    arm = ("arm",) if has_design(study) else ()
    n_assignments = in_study.count()
    # the researcher's file names: images.csv and an `image_name` column in assignments.csv,
    # only for data sets that have names (others keep their bytes)
    names = image_names(study.dataset)
    logged = {"assignment__participant__study": study}  # events and trials of in_study
    if not include_practice:
        logged["assignment__practice"] = False
    events = PromptEvent.objects.filter(**logged).order_by("assignment_id", "seq")
    n_shown = events.filter(shown_mask_sha256__isnull=False).count()
    n_input = events.exclude(input="").count()
    event_fields = (
        EVENT_FIELDS + (SHOWN_EVENT_FIELDS if n_shown else ()) + (INPUT_FIELDS if n_input else ())
    )
    event_rows = (
        {
            **row,
            "participant": row["assignment__participant__code"],
            "image_index": row["assignment__image__index"],
            "practice": row.get("assignment__practice"),
            "arm": row.get("assignment__arm"),
        }
        for row in events.values(
            *event_fields,
            *("assignment__practice" for _ in practice),
            *("assignment__arm" for _ in arm),
        ).iterator(chunk_size=CHUNK)
    )
    event_columns = (
        "participant", "assignment_id", "image_index", *arm, *practice, *event_fields[3:]
    )  # fmt: skip
    n_events = write_csv(archive, "events.csv", event_columns, event_rows)

    meta = {
        a["pk"]: a
        for a in in_study.values(
            "pk", "participant__code", "image__index", "image_id", "practice", "arm"
        )  # fmt: skip
    }

    ground_truth = GroundTruths(study)

    def timestep_rows():
        steps = study_assignment_timesteps(study, include_practice, TIMESTEP_FIELDS_NO_MASK)
        n_steps = PromptEvent.objects.filter(**logged, timestep__isnull=False).count()
        for assignment_id, rows, features in with_features(steps, meta, ground_truth, n_steps):
            a = meta[assignment_id]
            for row, feature in zip(rows, features, strict=True):
                yield {
                    **row,
                    **feature,
                    "participant": a["participant__code"],
                    "image_index": a["image__index"],
                    "practice": a["practice"],
                    "arm": a["arm"],
                    "n_green": len(row["green"]),
                    "n_red": len(row["red"]),
                }

    timestep_columns = (*TIMESTEP_COLUMNS[:3], *arm, *practice, *TIMESTEP_COLUMNS[3:])
    n_timesteps = write_csv(archive, "timesteps.csv", timestep_columns, timestep_rows())

    with archive.open_text("masks.jsonl") as out:
        steps = study_assignment_timesteps(study, include_practice, MASK_FIELDS)
        for assignment_id, rows in steps:
            a = meta[assignment_id]
            for row in rows:
                record = {
                    "participant": a["participant__code"],
                    "assignment_id": assignment_id,
                    "image_index": a["image__index"],
                    **({"arm": a["arm"]} if arm else {}),
                    **({"practice": a["practice"]} if include_practice else {}),
                    "timestep": row["timestep"],
                    "seq": row["seq"],
                    "rle": row["mask_rle"],
                }
                out.write(json.dumps(record, separators=(",", ":")) + "\n")

    assignments = (
        in_study.annotate(first_ts=Min("events__server_ts"), last_ts=Max("events__server_ts"))
        .order_by("pk")
        .values(
            "pk",
            "participant__code",
            "image__index",
            "order",
            "status",
            "started_at",
            "finished_at",
            "stop_reason",
            "survey_answers",
            "first_ts",
            "last_ts",
            "practice",
            "arm",
        )  # fmt: skip
    )
    steps = study_assignment_timesteps(study, include_practice, TIMESTEP_FIELDS_NO_MASK)
    pending = next(steps, None)
    done = 0

    def assignment_rows():
        nonlocal pending, done
        for a in assignments.iterator(chunk_size=CHUNK):
            rows = []
            if pending is not None and pending[0] == a["pk"]:
                rows = pending[1]
                pending = next(steps, None)
            log = assignment_log(
                {
                    "assignment_id": a["pk"],
                    "participant": a["participant__code"],
                    "dataset": study.dataset.name,
                    "image_index": a["image__index"],
                    "stop_reason": a["stop_reason"] or "",
                },
                rows,
                (
                    a["first_ts"].timestamp() if a["first_ts"] else None,
                    a["last_ts"].timestamp() if a["last_ts"] else None,
                ),
            )
            done += 1
            if progress:
                progress(done, n_assignments)
            yield {
                **assignment_figures(log).as_row(),
                "image_name": names.get(a["image__index"], ""),
                "order": a["order"],
                "arm": a["arm"],
                "practice": a["practice"],
                "status": a["status"],
                "started_at": a["started_at"],
                "finished_at": a["finished_at"],
                "survey_answers": a["survey_answers"],
            }

    figure_columns = (
        "assignment_id", "participant", "dataset", "image_index", "order", *practice, "status", "started_at", "finished_at",
        "stop_reason", "T", "first", "best", "final", "best_timestep", "best_round", "excess_after_best", "loss",
        "points_at_best", "green_at_best", "red_at_best", "points_at_final", "time_to_best_s", "total_time_s",
        "overprompted", "stagnation_ended", "final_below_best", "survey_answers",
    )  # fmt: skip
    if names:
        figure_columns = insert_after(figure_columns, "image_index", "image_name")
    if arm:
        figure_columns = insert_after(figure_columns, "order", "arm")
    write_csv(archive, "assignments.csv", figure_columns, assignment_rows())
    n_images = None
    if has_provenance(study.dataset):
        n_images = write_csv(archive, "images.csv", IMAGE_COLUMNS, image_rows(study.dataset))

    participant_columns = (
        "code",
        "number",
        "consent_version",
        "consented_at",
        "created_at",
        "completed_at",
    )
    if study.participants.filter(excluded=True).exists():
        # flagged only when someone is excluded: exports of other studies keep their bytes
        participant_columns += ("excluded", "excluded_reason")
    if arm:  # between: the arm; within: the participant's arms in order (the allocation's)
        participant_columns = insert_after(participant_columns, "number", "arm")
    participant_rows = (
        study.participants.order_by("number")
        .values(*(c for c in participant_columns if c != "arm"), "pk", *arm)
        .iterator(CHUNK)
    )
    if arm and method(study) == "within":
        orders = dict(study.allocations.values_list("participant_id", "arm_order"))
        participant_rows = (
            {**row, "arm": " > ".join(orders.get(row["pk"], []))} for row in participant_rows
        )
    if study.attention_images:  # likewise only for studies with attention-check images
        participant_columns += ("attention_check",)
        participant_rows = (
            {**row, "attention_check": attention_status(study, Participant(pk=row["pk"]))}
            for row in participant_rows
        )
    n_participants = write_csv(archive, "participants.csv", participant_columns, participant_rows)
    trial_fields = (
        "assignment__participant__code", "assignment_id", "assignment__image__index", "seq", "client_event_id",
        "operation", "substrate", "overlay", "target_class", "prob_before", "prob_after", "top5_before",
        "top5_after", "flipped", "area_fraction", "gradcam_iou", "voice_overlap", "model_id", "latency_ms",
        "client_ts", "server_ts", "region_rle",
    )  # fmt: skip
    study_trials = InterventionTrial.objects.filter(**logged)
    n_trial_input = study_trials.exclude(input="").count()
    trial_fields += INPUT_FIELDS if n_trial_input else ()
    trials = (
        {
            **row,
            "participant": row["assignment__participant__code"],
            "image_index": row["assignment__image__index"],
            "practice": row.get("assignment__practice"),
            "arm": row.get("assignment__arm"),
        }
        for row in study_trials.order_by("assignment_id", "seq")
        .values(
            *trial_fields,
            *("assignment__practice" for _ in practice),
            *("assignment__arm" for _ in arm),
        )
        .iterator(chunk_size=CHUNK)
    )
    n_trials = write_csv(
        archive,
        "trials.csv",
        ("participant", "assignment_id", "image_index", *arm, *practice, *trial_fields[3:]),
        trials,
    )
    n_baselines = write_baselines_csv(archive, "baselines.csv", study)
    counts = {
        "participants": n_participants,
        "assignments": n_assignments,
        "events": n_events,
        **({"events_with_shown": n_shown} if n_shown else {}),
        **({"events_with_input": n_input} if n_input else {}),
        "timesteps": n_timesteps,
        "trials": n_trials,
        **({"trials_with_input": n_trial_input} if n_trial_input else {}),
        "baseline_results": n_baselines,
        **({"images": n_images} if n_images is not None else {}),
    }
    counts.update(kind_of(study).tidy_tables(study, archive, include_practice))  # the kind's own
    return counts
