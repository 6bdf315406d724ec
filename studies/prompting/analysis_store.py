"""The prompting analysis as a stored result (docs/architecture.md "Scale"): computed once by a
background job (Job kind `analysis`, with progress), kept in `AnalysisResult`, and brought up
to date incrementally: only the assignments whose log changed since are read and recomputed.

- `data_version(study)`: what the result depends on (last event id and count, the study's
  assignments, exclusions, allocations, baselines, the data set, FORMAT). A result is fresh when
  its version equals the study's; the page says which data it shows either way.
- `update(study, progress)`: the per-assignment units (figures as `assignment_figures` gives
  them, and each timestep's (points, timestep, IoU)) of every changed assignment are rebuilt
  from the log; the tables (`views_analysis.study_tables`'s, overall and per arm) are
  aggregated from all units in the study's order, with the bootstrap intervals remembered by
  their values (`interventions.intervals.remembered_intervals`), so an unchanged group is not
  resampled again. The tables equal a fresh `study_tables` (a test compares them).
- `ensure(study)`: the stored result and its state; starts the update job when the result is
  missing or stale (none while one is queued or running).
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from interventions.intervals import mean_ci95, prefill, remembered_intervals
from studies.core import design
from studies.core.image_names import image_names
from studies.models import (
    AnalysisResult,
    Assignment,
    BaselineResult,
    PromptEvent,
    Study,
)
from studies.prompting import analysis, comparison
from studies.prompting.baselines import baseline_rows

FORMAT = 1  # bump when the stored tables change shape or meaning: every result is then stale
KIND = "analysis"
TASK = "workers.analysis_tasks.update_analysis"
Progress = Callable[[int, int], None]


def pack(value) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 1)


def unpack(data) -> object:
    return json.loads(zlib.decompress(bytes(data)))


def data_version(study: Study) -> dict:
    """Everything the stored tables depend on, as a small JSON object (a few aggregate
    queries; compared whole to a result's `version`)."""
    events = PromptEvent.objects.filter(
        assignment__participant__study=study, assignment__practice=False
    ).aggregate(last=Max("id"), n=Count("id"))
    assignments = (
        Assignment.objects.real()
        .filter(participant__study=study)
        .aggregate(last=Max("id"), n=Count("id"))
    )
    excluded = sorted(study.participants.filter(excluded=True).values_list("pk", flat=True))
    baselines = BaselineResult.objects.filter(study=study).aggregate(last=Max("id"), n=Count("id"))
    arms = json.dumps(study.design or {}, sort_keys=True)
    return {
        "format": FORMAT,
        "events": [events["last"], events["n"]],
        "assignments": [assignments["last"], assignments["n"]],
        "excluded": hashlib.sha256(repr(excluded).encode()).hexdigest()[:16],
        "allocations": study.allocations.count(),
        "baselines": [baselines["last"], baselines["n"]],
        "dataset": [study.dataset_id, study.dataset.name],
        "design": hashlib.sha256(arms.encode()).hexdigest()[:16],
    }


# ----------------------------------------------------------------------------- units


def _signatures(study: Study) -> list[tuple]:
    """(pk, participant number, order, signature) of every real assignment of a participant
    who is not excluded, in the study's order; the signature changes whenever the
    assignment's log or arm does."""
    rows = (
        Assignment.objects.real()
        .filter(participant__study=study, participant__excluded=False)
        .order_by("participant__number", "order")
        .values_list("pk", "participant__number", "order", "next_seq", "stop_reason", "arm")
    )
    return [(pk, number, order, [seq, stop, arm]) for pk, number, order, seq, stop, arm in rows]


def _unit(log: analysis.AssignmentLog, arm: str, sig: list) -> dict:
    return {
        "sig": sig,
        "arm": arm,
        "fig": analysis.assignment_figures(log).as_row(),
        "steps": [[s.n_points, s.t, s.iou] for s in log.timesteps],
    }


def _curve(units: list[dict], by: str) -> list[dict]:
    """`analysis.iou_curve` from the units (the same groups, values in the same order)."""
    column = 0 if by == "points" else 1
    groups: dict[int, list[float]] = defaultdict(list)
    for u in units:
        for step in u["steps"]:
            groups[step[column]].append(step[2])
    prefill(groups.values())  # the new intervals on both cores
    out = []
    for key in sorted(groups):
        ci = mean_ci95(groups[key])
        out.append({by: key, "n": ci.n, "mean_iou": ci.mean, "ci_low": ci.low, "ci_high": ci.high})
    return out


def tables_from_units(
    study: Study, units: list[dict], baselines: list[dict], names: dict
) -> dict[str, list[dict]]:
    """`views_analysis.study_tables` computed from units (in the study's order)."""
    figures = [analysis.AssignmentFigures(**u["fig"]) for u in units]
    started = {f.participant for f in figures if f.T > 0}
    counted = [f for f in figures if f.participant in started]
    groups = analysis.summaries(counted)
    assignments = [dict(u["fig"]) for u in units]  # = f.as_row() (the unit holds that row)
    scored = [f for f in counted if f.T > 0]  # the human series of the two comparisons
    prefill([[getattr(f, m) for f in scored] for m in ("first", "best", "final")])
    if names:
        assignments = [analysis.with_name(row, names) for row in assignments]
    return {
        "assignments": assignments,
        "participants": groups["participant"],
        "datasets": groups["dataset"],
        "study": groups["study"],
        "iou_by_points": _curve(units, "points"),
        "iou_by_timestep": _curve(units, "timestep"),
        "baselines": baselines,
        "human_vs_baselines": analysis.baseline_comparison(counted, baselines),
        "human_vs_automated": comparison.comparison_rows(counted, baselines, study.dataset.name),
    }


# ----------------------------------------------------------------------------- the update


def update(study: Study, progress: Progress | None = None) -> AnalysisResult:
    """Bring the study's stored analysis up to date (see the module doc); return it."""
    started = time.perf_counter()
    version = data_version(study)
    current = AnalysisResult.objects.filter(study=study).first()
    cache = unpack(current.cache) if current is not None else {"units": {}, "intervals": {}}
    if current is not None and current.version.get("format") != FORMAT:
        cache = {"units": {}, "intervals": {}}
    old = cache["units"]
    order = _signatures(study)
    changed = [pk for pk, _, _, sig in order if old.get(str(pk), {}).get("sig") != sig]
    total = len(changed)
    if progress:
        progress(0, total)
    fresh: dict[str, dict] = {}
    arm_of = {pk: sig[2] for pk, _, _, sig in order}
    sig_of = {pk: sig for pk, _, _, sig in order}
    step = 2000
    for i in range(0, len(changed), step):
        for log in analysis.load_logs(study, only=changed[i : i + step]):
            pk = log.assignment_id
            fresh[str(pk)] = _unit(log, arm_of[pk], sig_of[pk])
        if progress:
            progress(min(total, i + step), total)
    units = {str(pk): fresh.get(str(pk)) or old[str(pk)] for pk, _, _, _ in order}
    ordered = [units[str(pk)] for pk, _, _, _ in order]
    baselines = baseline_rows(study)
    names = image_names(study.dataset)
    memo = cache.get("intervals", {})
    with remembered_intervals(memo):
        tables = tables_from_units(study, ordered, baselines, names)
        per_arm = {
            name: tables_from_units(
                study, [u for u in ordered if u["arm"] == name], baselines, names
            )
            for name in design.arm_names(study)
        }
        comparison_rows = []
        if design.has_design(study):
            from studies.core.arm_analysis import comparison_rows as compare

            comparison_rows = compare(study, units=arm_units_from(study, ordered))
    head = {k: v for k, v in tables.items() if k != "assignments"}
    head["arm_comparison"] = comparison_rows
    rows = {"": tables["assignments"]}
    arms = {}
    for name, t in per_arm.items():
        rows[name] = t["assignments"]
        arms[name] = {k: v for k, v in t.items() if k != "assignments"}
    head["arms"] = arms
    fields = {
        "version": version,
        "computed_at": timezone.now(),
        "assignments": len(ordered),
        "recomputed": len(fresh),
        "seconds": round(time.perf_counter() - started, 3),
        "tables": pack(head),
        "assignment_rows": pack(rows),
        "cache": pack({"units": units, "intervals": memo}),
    }
    with transaction.atomic():
        result, _ = AnalysisResult.objects.update_or_create(study=study, defaults=fields)
    return result


def arm_units_from(study: Study, units: list[dict]) -> list[dict]:
    """The arm comparison's rows (prompting `arm_units`) from stored units."""
    return [
        row
        for u in units
        if (row := analysis.arm_unit(analysis.AssignmentFigures(**u["fig"]), u["arm"])) is not None
    ]


# ----------------------------------------------------------------------------- reading


def stored(study: Study, *, heavy: bool = False) -> AnalysisResult | None:
    query = AnalysisResult.objects.filter(study=study)
    if not heavy:
        query = query.defer("assignment_rows", "cache")
    return query.first()


def tables_of(result: AnalysisResult, arm: str | None = None, assignments: bool = False) -> dict:
    """The stored tables (overall, or of one arm), with the per-assignment table if asked."""
    head = unpack(result.tables)
    tables = dict(head["arms"][arm]) if arm else {k: v for k, v in head.items() if k != "arms"}
    tables.pop("arm_comparison", None)
    if assignments:
        tables["assignments"] = unpack(result.assignment_rows)[arm or ""]
    return tables


def comparison_of(result: AnalysisResult) -> list[dict]:
    return unpack(result.tables).get("arm_comparison", [])


def running_job(study: Study):
    return study.jobs.filter(kind=KIND, status__in=("queued", "running")).order_by("-pk").first()


def start_update(study: Study, user=None):
    """The queued or running update job, else a new one. In the embedded default without its
    background thread (tests, management commands) the job runs here and now, as an eager
    task would after the commit."""
    from django.conf import settings

    from studies.core import background
    from studies.core.dispatch import celery_task, start_job

    job = running_job(study)
    if job is not None:
        return job
    if settings.CELERY_TASK_ALWAYS_EAGER and not background.enabled():
        job = study.jobs.create(kind=KIND, params={}, created_by=user)
        celery_task(TASK).apply(args=[job.pk], throw=True)
        return job
    return start_job(study, KIND, TASK, {}, created_by=user)


def ensure(study: Study, user=None) -> dict:
    """The analysis page's view of the stored result: {"result", "fresh", "job", "version"};
    starts the update when the result is missing or stale (in the embedded default without a
    background thread it runs at once, and the result is then fresh)."""
    version = data_version(study)
    result = stored(study)
    job = None
    if result is None or result.version != version:
        job = start_update(study, user)
        job.refresh_from_db()
        result = stored(study)
    fresh = result is not None and result.version == version
    if fresh:
        job = None
    return {"result": result, "fresh": fresh, "job": job, "version": version}


def read(study: Study, arm: str | None = None, assignments: bool = False) -> tuple[dict, object]:
    """(tables, computed_at) for a plot or a CSV: the stored result as it is (the page says
    how fresh), computed and stored first when there is none; the per-assignment table only
    when asked."""
    result = stored(study)
    if result is None:
        result = update(study)
    return tables_of(result, arm, assignments=assignments), result.computed_at
