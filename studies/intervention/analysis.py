"""The intervention study's analysis (pure functions over plain trial records; `load_trials`
at the end is the thin ORM loader).

- flip rate: the share of a participant's trials that flipped the prediction (the goal of
  the study), per (operation, substrate), with the seeded bootstrap 95% interval of
  `studies.core.intervals` (trials as the unit).
- area needed to flip: per image, the smallest area fraction of a flipping deletion, people
  (min and median over participants) vs the model's own Grad-CAM order (`study_comparison`).
- agreement: per trial, the IoU of the person's region with Grad-CAM's same-area top region
  (`gradcam_iou`) and the share of the region in high VOICE uncertainty (`voice_overlap`),
  as a mean with interval per operation.
- timelines: each participant's trials in order, time since their first trial, the target
  probability after each and whether it flipped.
Participants marked excluded are left out; participants with no trial are listed apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from studies.core.intervals import mean_ci95


@dataclass(frozen=True)
class TrialRecord:
    participant: str
    image_index: int
    seq: int
    operation: str
    substrate: str
    flipped: bool
    area_fraction: float | None
    prob_before: float | None
    prob_after: float | None
    gradcam_iou: float | None
    voice_overlap: float | None
    time_s: float


def flip_rates(trials: Iterable[TrialRecord]) -> list[dict]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for t in trials:
        groups[(t.operation, t.substrate)].append(1.0 if t.flipped else 0.0)
    rows = []
    for (operation, substrate), values in sorted(groups.items()):
        ci = mean_ci95(values)
        rows.append(
            {
                "operation": operation,
                "substrate": substrate,
                "trials": ci.n,
                "flips": int(sum(values)),
                "flip_rate": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
            }
        )
    return rows


def agreement(trials: Iterable[TrialRecord]) -> list[dict]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for t in trials:
        for measure in ("gradcam_iou", "voice_overlap"):
            value = getattr(t, measure)
            if value is not None:
                groups[(measure, t.operation)].append(value)
                groups[(measure, "all")].append(value)
    rows = []
    for (measure, operation), values in sorted(groups.items()):
        ci = mean_ci95(values)
        rows.append(
            {
                "measure": measure,
                "operation": operation,
                "n": ci.n,
                "mean": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
            }
        )
    return rows


def timelines(trials: Iterable[TrialRecord]) -> list[dict]:
    """Every trial of every participant in order, with seconds since that participant's first."""
    by_participant: dict[str, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_participant[t.participant].append(t)
    rows = []
    for code in sorted(by_participant):
        ordered = sorted(by_participant[code], key=lambda t: (t.time_s, t.seq))
        start = ordered[0].time_s
        for k, t in enumerate(ordered):
            row = asdict(t)
            row["trial"] = k + 1
            row["since_start_s"] = round(t.time_s - start, 3)
            del row["time_s"]
            rows.append(row)
    return rows


def load_trials(study, arm: str | None = None) -> list[TrialRecord]:
    """The study's trials of participants not marked excluded, as records (only those of
    design arm `arm` when given)."""
    from studies.models import InterventionTrial

    rows = (
        InterventionTrial.objects.filter(
            assignment__participant__study=study,
            assignment__participant__excluded=False,
            assignment__practice=False,
            **({"assignment__arm": arm} if arm is not None else {}),
        )
        .select_related("assignment__participant", "assignment__image")
        .order_by("assignment__participant__number", "server_ts", "seq")
    )
    return [
        TrialRecord(
            participant=t.assignment.participant.code,
            image_index=t.assignment.image.index,
            seq=t.seq,
            operation=t.operation,
            substrate=t.substrate,
            flipped=t.flipped,
            area_fraction=t.area_fraction,
            prob_before=t.prob_before,
            prob_after=t.prob_after,
            gradcam_iou=t.gradcam_iou,
            voice_overlap=t.voice_overlap,
            time_s=t.server_ts.timestamp(),
        )
        for t in rows
    ]
