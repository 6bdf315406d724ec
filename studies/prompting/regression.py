"""What predicts a good prompt (docs/pointprompt.md): the study's released feature table, the
background Job that regresses the timestep's score on it, and its cache.

The table is the export's stats.csv computed straight from the database (the same arrays the
PointPrompt export writes, participants by number, excluded participants and practice images
left out), with each row's own Exc / Inc encasing (the "corrected" variant: as released they
describe the previous timestep). A result is cached under a key of the study's data: the last
prompt event id, the number of events and the excluded participants; any new event, deleted
event or exclusion changes the key, and the page offers a new run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
from django.db.models import Count, Max

from studies.models import DatasetImage, Job, PromptEvent, Study
from studies.prompting.exports.pointprompt import attempt_of
from studies.prompting.exports.records import (
    dataset_indices,
    load_image,
    load_label,
    participant_timesteps,
)

KIND = "regression"
TASK = "workers.regression_tasks.run_prompt_regression"
FOLDS = 3
TREES = 100  # the random forest's trees
REPEATS = 5  # permutation-importance repeats
Progress = Callable[[int, int], None]


def data_key(study: Study) -> str:
    """Changes whenever the study's timesteps or exclusions change."""
    events = PromptEvent.objects.filter(
        assignment__participant__study=study, assignment__practice=False
    ).aggregate(last=Max("id"), n=Count("id"))
    excluded = sorted(study.participants.filter(excluded=True).values_list("pk", flat=True))
    raw = f"{events['last']}:{events['n']}:{excluded}:{study.dataset_id}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def study_stats_table(study: Study, progress: Progress | None = None):
    """The released feature table of the study (variant "corrected", see the module doc)."""
    from interventions.pointprompt.features import Folder, prepare_image, released_stats

    dataset_indices(study)  # contiguous indices, else a clear error
    images = list(DatasetImage.objects.filter(dataset=study.dataset).order_by("index"))
    has_timesteps = PromptEvent.objects.filter(
        assignment__participant__study=study, assignment__practice=False, timestep__isnull=False
    ).exists()
    if not has_timesteps:
        raise ValueError(f"study {study.pk} has no timesteps to regress on")
    contexts = []
    for k, image in enumerate(images):
        contexts.append(prepare_image(load_image(image), load_label(image), image.index))
        if progress:
            progress(k + 1, len(images))
    folders = []
    participants = study.participants.filter(excluded=False).order_by("number")
    for participant_id, code in participants.values_list("pk", "code"):
        by_index = dict(participant_timesteps(participant_id))
        attempts = []
        for index in range(len(images)):
            rows = by_index.get(index, [])
            scores = [row["iou"] for row in rows]
            if any(s is None for s in scores):
                raise ValueError(f"{code} image {index}: a timestep has no score")
            attempts.append(attempt_of(rows, np.asarray(scores, dtype=np.float64)))
        folders.append(Folder(code, attempts))
    return released_stats(study.dataset.name, contexts, folders, variant="corrected")


def jobs_for_key(study: Study, key: str):
    return study.jobs.filter(kind=KIND, params__key=key).order_by("-pk")


def current_job(study: Study) -> Job | None:
    """The newest regression job of the study's current data (any status), else None."""
    return jobs_for_key(study, data_key(study)).first()


def start_regression(study: Study, user=None) -> tuple[Job, bool]:
    """(job, started): the cached or running job of the current data, else a new one."""
    from studies.core.dispatch import start_job

    key = data_key(study)
    existing = jobs_for_key(study, key).exclude(status="failed").first()
    if existing is not None:
        return existing, False
    params = {"key": key, "folds": FOLDS, "seed": 0, "trees": TREES, "repeats": REPEATS}
    job = start_job(study, KIND, TASK, params, created_by=user)
    return job, True


def result_rows(report: dict) -> list[dict]:
    """The CSV: R^2 rows, then permutation-importance rows."""
    rows = [
        {"table": "r2", "model": r["model"], "dataset": r["dataset"], "feature": "",
         "value": r["r2"], "std": "", "n": r["n"]}
        for r in report.get("r2", [])
    ]  # fmt: skip
    rows += [
        {"table": "permutation_importance", "model": r["model"], "dataset": "all",
         "feature": r["feature"], "value": r["importance"], "std": r["std"],
         "n": report.get("n_tested", "")}
        for r in report.get("importances", [])
    ]  # fmt: skip
    return rows


def top_importances(report: dict, model: str, n: int = 10) -> list[dict]:
    rows = [r for r in report.get("importances", []) if r["model"] == model]
    rows = [r for r in rows if not math.isnan(r["importance"])]
    return sorted(rows, key=lambda r: -r["importance"])[:n]
