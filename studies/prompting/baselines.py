"""Automated prompting baselines as a service: which prompts to run, starting the batch job,
storing and reading results. The points and masks are computed in the worker
(workers/export_tasks.py) with `interventions.prompt_strategies` and the study's own model.

Point counts: `human_best` (default) gives every scored assignment one automated prompt with the
green / red counts of that annotator's best timestep on that image; `fixed` gives every image
of the data set one prompt with the same counts. Results are keyed by
strategy:seed:source:unit, so a rerun replaces (and, being seeded, reproduces) them.
"""

from __future__ import annotations

from dataclasses import dataclass

from interventions.prompt_strategies import STRATEGIES
from studies.core.dispatch import start_job
from studies.core.kinds import require_kind
from studies.models import BaselineResult, DatasetImage, Job, Study
from studies.prompting.analysis import best_position
from studies.prompting.exports.records import study_assignment_timesteps


@dataclass(frozen=True)
class BaselineUnit:
    image_id: int
    assignment_id: int | None
    n_green: int
    n_red: int
    count_source: str

    def key(self, strategy: str, seed: int) -> str:
        unit = f"a{self.assignment_id}" if self.assignment_id else f"i{self.image_id}"
        return f"{strategy}:{seed}:{self.count_source}:{unit}"


def check_request(strategies: list[str], fixed: tuple[int, int] | None) -> None:
    unknown = [s for s in strategies if s not in STRATEGIES]
    if not strategies or unknown:
        raise ValueError(
            f"unknown strategy {', '.join(unknown) or '(none)'}; expected one of {', '.join(STRATEGIES)}"
        )
    if fixed is not None and (len(fixed) != 2 or min(fixed) < 0 or sum(fixed) == 0):
        raise ValueError(f"fixed counts must be (green >= 0, red >= 0), not both 0; got {fixed}")


def baseline_units(study: Study, fixed: tuple[int, int] | None = None) -> list[BaselineUnit]:
    """The prompts to run: per scored assignment (human best counts) or per image (fixed)."""
    if fixed is not None:
        return [
            BaselineUnit(pk, None, int(fixed[0]), int(fixed[1]), "fixed")
            for pk in DatasetImage.objects.filter(dataset=study.dataset)
            .order_by("index")
            .values_list("pk", flat=True)
        ]
    image_of = dict(study.participants.values_list("assignments__pk", "assignments__image_id"))
    units = []
    for assignment_id, rows in study_assignment_timesteps(study):
        best = rows[best_position([r["iou"] for r in rows])]
        units.append(
            BaselineUnit(
                image_of[assignment_id],
                assignment_id,
                len(best["green"]),
                len(best["red"]),
                "human_best",
            )
        )
    return units


def store_result(
    study: Study, unit: BaselineUnit, strategy: str, seed: int, green, red, prediction: dict
) -> BaselineResult:
    row, _ = BaselineResult.objects.update_or_create(
        study=study,
        key=unit.key(strategy, seed),
        defaults={
            "image_id": unit.image_id,
            "assignment_id": unit.assignment_id,
            "strategy": strategy,
            "seed": seed,
            "count_source": unit.count_source,
            "n_green": unit.n_green,
            "n_red": unit.n_red,
            "green": [[float(x), float(y)] for x, y in green],
            "red": [[float(x), float(y)] for x, y in red],
            "iou": float(prediction["iou"]),
            "predicted_iou": prediction.get("predicted_iou"),
            "mask_index": prediction.get("mask_index"),
            "mask_rle": prediction.get("mask_rle"),
            "model_id": prediction.get("model_id", ""),
        },
    )
    return row


def start_baselines(
    study: Study, strategies: list[str], seed: int = 0, fixed: tuple[int, int] | None = None
) -> Job:
    """Create a `baseline` Job and enqueue it on the batch queue (after the commit)."""
    check_request(strategies, fixed)
    kind = require_kind(study, "prompting")
    if study.model.kind not in kind.model_kinds:
        raise ValueError(f"study {study.pk} is not a prompting study with a segmentation model")
    return start_job(
        study,
        "baseline",
        "workers.export_tasks.run_prompt_baselines",
        {
            "strategies": list(strategies),
            "seed": int(seed),
            "fixed": list(fixed) if fixed else None,
        },
    )


def baseline_rows(study: Study) -> list[dict]:
    """Stored results as plain rows for the analysis (strategy, iou, counts, image, assignment)."""
    return list(
        BaselineResult.objects.filter(study=study)
        .order_by("strategy", "image__index", "assignment_id")
        .values(
            "strategy",
            "seed",
            "count_source",
            "iou",
            "n_green",
            "n_red",
            "image__index",
            "assignment_id",
        )
    )
