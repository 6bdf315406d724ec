"""Automated prompting baselines as a service: which prompts to run, starting the batch job,
storing and reading results. The points and masks are computed in the worker
(workers/export_tasks.py) with the study's own model.

Two sets of strategies (docs/pointprompt.md "The released benchmark protocol"):

- The released ones (default; `rand`, `shi-tomasi`, `kmediod`, `entropy`, `max_dist`,
  interventions/pointprompt/strategies.py): one prompt per image of the data set, in index order,
  from one random stream seeded once per strategy, as the released `main.py` runs them. Counts:
  `fixed` (given), `one_point` (1 + 1, the released `_1pt` mode), `point_nums` (the released
  table, when the data set's name is one of PointPrompt's 16) or `human_mean` (the mean of the
  study's human best-timestep counts, rounded half up, at least 1).
- The platform's own families (`random`, `kmedoids`, `shi_tomasi`, `entropy`, `max_distance`,
  interventions/prompt_strategies.py), as before: `human_best` (one prompt per scored
  assignment with the counts of that annotator's best timestep) or `fixed` (per image).

Results are keyed by strategy:seed:source:unit, so a rerun replaces (and, being seeded,
reproduces) them; the strategy names of the two sets differ, so old rows keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from interventions.pointprompt.released_names import (
    RELEASED_STRATEGIES,
    UNAVAILABLE,
    mean_count,
    released_counts,
)
from interventions.prompt_strategies import STRATEGIES as FAMILY_STRATEGIES
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


STRATEGIES = (*RELEASED_STRATEGIES, *FAMILY_STRATEGIES)  # the released ones first: the default
DEFINITIONS = {
    **{
        name: "PointPrompt as released (olivesgatech/PointPrompt point_sampling, main.py "
        "942f7fc); interventions/pointprompt/strategies.py, docs/pointprompt.md"
        for name in RELEASED_STRATEGIES
    },
    **{
        name: "the platform's own family (not the released function); "
        "interventions/prompt_strategies.py, docs/design.md"
        for name in FAMILY_STRATEGIES
    },
}


def check_request(
    strategies: list[str], fixed: tuple[int, int] | None, one_point: bool = False
) -> None:
    unavailable = [s for s in strategies if s in UNAVAILABLE]
    if unavailable:
        name = unavailable[0]
        raise ValueError(f"strategy {name!r} is unavailable here: {UNAVAILABLE[name]}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if not strategies or unknown:
        raise ValueError(
            f"unknown strategy {', '.join(unknown) or '(none)'}; expected one of {', '.join(STRATEGIES)}"
        )
    if fixed is not None and (len(fixed) != 2 or min(fixed) < 0 or sum(fixed) == 0):
        raise ValueError(f"fixed counts must be (green >= 0, red >= 0), not both 0; got {fixed}")
    released = [s for s in strategies if s in RELEASED_STRATEGIES]
    if released and fixed is not None and min(fixed) < 1:
        raise ValueError(
            f"the released strategies ({', '.join(released)}) need at least 1 green and 1 red "
            f"point (they cannot place 0 of a kind); got fixed counts {tuple(fixed)}"
        )
    if one_point and fixed is not None:
        raise ValueError("give either fixed counts or the 1 + 1 (one point) mode, not both")
    if one_point and not released:
        raise ValueError(
            "the 1 + 1 (one point, the released _1pt) mode is for the released strategies"
        )


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


def human_mean_counts(study: Study) -> tuple[int, int]:
    """The mean green and red counts of the study's scored assignments' best timesteps, each
    rounded half up and at least 1 (released_names.mean_count)."""
    greens, reds = [], []
    for _, rows in study_assignment_timesteps(study):
        best = rows[best_position([r["iou"] for r in rows])]
        greens.append(len(best["green"]))
        reds.append(len(best["red"]))
    if not greens:
        raise ValueError(
            f"study {study.pk} has no scored timesteps to take the human mean counts from, and its "
            f"data set {study.dataset.name!r} is not one of PointPrompt's 16 (the released table): "
            "give fixed counts or the 1 + 1 mode"
        )
    return mean_count(greens), mean_count(reds)


def released_units(
    study: Study, fixed: tuple[int, int] | None = None, one_point: bool = False
) -> list[BaselineUnit]:
    """The released protocol's prompts: one per image of the data set, in index order, with the
    counts of `fixed`, the 1 + 1 mode, the released table or the human mean (in that order)."""
    if fixed is not None:
        green, red, source = int(fixed[0]), int(fixed[1]), "fixed"
    elif one_point:
        green, red, source = 1, 1, "one_point"
    elif (table := released_counts(study.dataset.name)) is not None:
        (green, red), source = table, "point_nums"
    else:
        (green, red), source = human_mean_counts(study), "human_mean"
    return [
        BaselineUnit(pk, None, green, red, source)
        for pk in DatasetImage.objects.filter(dataset=study.dataset)
        .order_by("index")
        .values_list("pk", flat=True)
    ]


def definitions_used(study: Study) -> dict:
    """The manifest's `baseline_definitions`: for each strategy with stored results, which
    definition made them and from which count sources. Only when a released strategy has
    results: a study with the platform's families only (all baselines before the released ones
    existed) gets {} and so keeps its manifest as it was."""
    used: dict[str, set] = {}
    for strategy, source in (
        BaselineResult.objects.filter(study=study)
        .values_list("strategy", "count_source")
        .distinct()
    ):
        used.setdefault(strategy, set()).add(source)
    if not any(name in RELEASED_STRATEGIES for name in used):
        return {}
    return {
        "baseline_definitions": {
            name: {
                "definition": DEFINITIONS.get(name, "unknown (a strategy of an older version)"),
                "count_sources": sorted(sources),
            }
            for name, sources in sorted(used.items())
        }
    }


def _result_fields(unit: BaselineUnit, strategy: str, seed: int, green, red, prediction: dict):
    return {
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
    }


_UPDATED = [
    "image", "assignment", "strategy", "seed", "count_source", "n_green", "n_red", "green",
    "red", "iou", "predicted_iou", "mask_index", "mask_rle", "model_id", "created_at",
]  # fmt: skip


def store_result(
    study: Study, unit: BaselineUnit, strategy: str, seed: int, green, red, prediction: dict
) -> BaselineResult:
    row, _ = BaselineResult.objects.update_or_create(
        study=study,
        key=unit.key(strategy, seed),
        defaults=_result_fields(unit, strategy, seed, green, red, prediction),
    )
    return row


def store_results(study: Study, rows) -> None:
    """`store_result` for many (unit, strategy, seed, green, red, prediction) rows in one
    upsert on (study, key): the same fields as one at a time, a rerun replaces them."""
    objects = [
        BaselineResult(
            study=study,
            key=unit.key(strategy, seed),
            **_result_fields(unit, strategy, seed, green, red, prediction),
        )
        for unit, strategy, seed, green, red, prediction in rows
    ]
    if objects:
        BaselineResult.objects.bulk_create(
            objects,
            update_conflicts=True,
            unique_fields=["study", "key"],
            update_fields=_UPDATED,
        )


def start_baselines(
    study: Study,
    strategies: list[str],
    seed: int = 0,
    fixed: tuple[int, int] | None = None,
    one_point: bool = False,
) -> Job:
    """Create a `baseline` Job and enqueue it on the batch queue (after the commit). The
    released strategies' counts are settled here, so a request that has none fails at once."""
    check_request(strategies, fixed, one_point)
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an integer from 0 to {2**32 - 1}, got {seed}")
    kind = require_kind(study, "prompting")
    if study.model.kind not in kind.model_kinds:
        raise ValueError(f"study {study.pk} is not a prompting study with a segmentation model")
    if any(s in RELEASED_STRATEGIES for s in strategies):
        released_units(study, fixed, one_point)  # raises when there are no counts to use
    params = {
        "strategies": list(strategies),
        "seed": int(seed),
        "fixed": list(fixed) if fixed else None,
    }
    if one_point:
        params["one_point"] = True
    return start_job(study, "baseline", "workers.export_tasks.run_prompt_baselines", params)


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
