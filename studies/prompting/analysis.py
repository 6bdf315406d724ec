"""The overprompting analysis (docs/design.md "Overprompting analysis"): pure functions over the log.

The figure functions take plain records (`AssignmentLog`, `TimestepRecord`) and never touch the
ORM; `load_logs(study)` at the end is the thin loader that turns rows into those records.

Definitions (scores are the per-timestep IoU of the protocol):
- first / best / final: the score of timestep 0 / the highest (first one on ties, as
  `argsort(-scores, kind="stable")[0]`) / the last timestep.
- excess: timesteps after the best one within the best one's round; loss = best - final.
- overprompted: final < best and the annotator ended the image (stop reason `finished`);
  images ended by the protocol (`stagnation`) are reported apart, since there "final < best" is
  made by the stagnation rule.
- 95% interval of a mean: the seeded bootstrap percentile interval of `studies.core.intervals`
  (it stays inside [0, 1] for IoU, unlike mean +- t * s / sqrt(n); none for fewer than 2 values).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from studies.core.intervals import INTERVAL_METHOD, MeanCI, mean_ci95  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TimestepRecord:
    t: int
    round: int  # 1-based, as stored
    green: tuple[tuple[float, float], ...]
    red: tuple[tuple[float, float], ...]
    iou: float
    time_s: float  # server time, seconds since the epoch

    @property
    def n_points(self) -> int:
        return len(self.green) + len(self.red)


@dataclass(frozen=True)
class AssignmentLog:
    assignment_id: int
    participant: str
    dataset: str
    image_index: int
    stop_reason: str  # "finished" (annotator), "stagnation" (protocol) or "" (not ended)
    start_s: float | None  # time of the first event of any kind
    end_s: float | None  # time of the last event of any kind
    timesteps: tuple[TimestepRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AssignmentFigures:
    assignment_id: int
    participant: str
    dataset: str
    image_index: int
    stop_reason: str
    T: int
    first: float | None
    best: float | None
    final: float | None
    best_timestep: int | None
    best_round: int | None
    excess_after_best: int | None
    loss: float | None
    points_at_best: int | None
    green_at_best: int | None
    red_at_best: int | None
    points_at_final: int | None
    time_to_best_s: float | None
    total_time_s: float | None
    overprompted: bool
    stagnation_ended: bool
    final_below_best: bool

    def as_row(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- per assignment


def best_position(scores: Sequence[float]) -> int:
    """Index of the best score, the first on ties (= argsort(-scores, kind="stable")[0])."""
    return int(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[0])


def assignment_figures(log: AssignmentLog) -> AssignmentFigures:
    """docs/design.md's per-assignment figures of one image worked by one annotator."""
    steps = log.timesteps
    total_time = None
    if log.start_s is not None and log.end_s is not None:
        total_time = log.end_s - log.start_s
    base = dict(
        assignment_id=log.assignment_id,
        participant=log.participant,
        dataset=log.dataset,
        image_index=log.image_index,
        stop_reason=log.stop_reason,
        T=len(steps),
        total_time_s=total_time,
        stagnation_ended=log.stop_reason == "stagnation",
    )
    if not steps:
        return AssignmentFigures(
            **base,
            first=None, best=None, final=None, best_timestep=None, best_round=None,
            excess_after_best=None, loss=None, points_at_best=None, green_at_best=None,
            red_at_best=None, points_at_final=None, time_to_best_s=None,
            overprompted=False, final_below_best=False,
        )  # fmt: skip
    scores = [s.iou for s in steps]
    b = best_position(scores)
    best, final = steps[b], steps[-1]
    excess = sum(1 for s in steps[b + 1 :] if s.round == best.round)
    below = final.iou < best.iou
    return AssignmentFigures(
        **base,
        first=steps[0].iou,
        best=best.iou,
        final=final.iou,
        best_timestep=best.t,
        best_round=best.round,
        excess_after_best=excess,
        loss=best.iou - final.iou,
        points_at_best=best.n_points,
        green_at_best=len(best.green),
        red_at_best=len(best.red),
        points_at_final=final.n_points,
        time_to_best_s=None if log.start_s is None else best.time_s - log.start_s,
        overprompted=below and log.stop_reason == "finished",
        final_below_best=below,
    )


# ----------------------------------------------------------------------------- curves


def iou_curve(logs: Iterable[AssignmentLog], by: str) -> list[dict]:
    """Mean IoU with 95% interval per number of points (`by="points"`) or timestep (`by="timestep"`)."""
    if by not in ("points", "timestep"):
        raise ValueError(f"by must be 'points' or 'timestep', got {by!r}")
    groups: dict[int, list[float]] = defaultdict(list)
    for log in logs:
        for step in log.timesteps:
            groups[step.n_points if by == "points" else step.t].append(step.iou)
    out = []
    for key in sorted(groups):
        ci = mean_ci95(groups[key])
        out.append({by: key, "n": ci.n, "mean_iou": ci.mean, "ci_low": ci.low, "ci_high": ci.high})
    return out


def with_name(row: dict, names: dict[int, str]) -> dict:
    out = {}
    for key, value in row.items():
        out[key] = value
        if key == "image_index":
            out["image_name"] = names.get(value, "")
    return out


def arm_unit(f, arm: str) -> dict | None:
    """One assignment's row of the arm comparison (None: no score yet, no outcome): best,
    final, timesteps (T), overprompted (images the annotator ended; else missing) and
    stagnation_ended (ended images; else missing)."""
    if f.T == 0:
        return None
    ended = f.stop_reason in ("finished", "stagnation")
    return {
        "participant": f.participant,
        "image": f.image_index,
        "arm": arm,
        "best": f.best,
        "final": f.final,
        "timesteps": float(f.T),
        "overprompted": f.overprompted if f.stop_reason == "finished" else None,
        "stagnation_ended": f.stagnation_ended if ended else None,
    }


# ----------------------------------------------------------------------------- aggregates


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarise(
    figures: Iterable[AssignmentFigures], key: Callable[[AssignmentFigures], object] | str
) -> list[dict]:
    """Aggregates per group (participant, dataset, or one group for the study).

    Among annotator-ended scored images: share overprompted, mean loss, mean excess timesteps.
    Stagnation-ended images are counted apart, with their own share of final < best and loss.
    """
    keyfn = (lambda f: getattr(f, key)) if isinstance(key, str) else key
    groups: dict[object, list[AssignmentFigures]] = defaultdict(list)
    for fig in figures:
        groups[keyfn(fig)].append(fig)
    rows = []
    for group in sorted(groups, key=str):
        figs = groups[group]
        scored = [f for f in figs if f.T > 0]
        annot = [f for f in scored if f.stop_reason == "finished"]
        stag = [f for f in scored if f.stop_reason == "stagnation"]
        rows.append(
            {
                "group": group,
                "assignments": len(figs),
                "scored": len(scored),
                "annotator_ended": len(annot),
                "overprompted": sum(f.overprompted for f in annot),
                "share_overprompted": (sum(f.overprompted for f in annot) / len(annot))
                if annot
                else math.nan,
                "mean_loss": _mean([f.loss for f in annot]),
                "mean_excess": _mean([f.excess_after_best for f in annot]),
                "stagnation_ended": len(stag),
                "stagnation_share_final_below_best": (
                    (sum(f.final_below_best for f in stag) / len(stag)) if stag else math.nan
                ),
                "stagnation_mean_loss": _mean([f.loss for f in stag]),
                "mean_best": _mean([f.best for f in scored]),
                "mean_final": _mean([f.final for f in scored]),
                "mean_timesteps": _mean([f.T for f in scored]),
            }
        )
    return rows


def summaries(figures: Sequence[AssignmentFigures]) -> dict[str, list[dict]]:
    """The aggregates per participant, per dataset and for the whole study."""
    return {
        "participant": summarise(figures, "participant"),
        "dataset": summarise(figures, "dataset"),
        "study": summarise(figures, lambda f: "all"),
    }


# ----------------------------------------------------------------------------- prompt features

FEATURE_NAMES = (
    "n_green",
    "n_red",
    "prompt_coverage",
    "max_spread",
    "avg_nn_distance",
    "chamfer_inclusion_exclusion",
    "exclusion_spread",
    "inclusion_efficiency",
    "inclusion_encasing",
    "exclusion_encasing",
)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def _hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    canvas = np.zeros(shape, dtype=np.uint8)
    if len(points) >= 3:
        hull = cv2.convexHull(np.round(points).astype(np.int32).reshape(-1, 1, 2))
        cv2.fillConvexPoly(canvas, hull, 1)
    return canvas.astype(bool)


def _inside_share(points: np.ndarray, region: np.ndarray) -> float:
    """Share of the points whose pixel (floor, clamped to the image) is in `region`: a prompt
    has a few points, so a plain loop (numpy's per-call cost was most of the time here)."""
    h, w = region.shape
    hits = 0
    for x, y in points.tolist():
        hits += bool(region[min(max(math.floor(y), 0), h - 1), min(max(math.floor(x), 0), w - 1)])
    return hits / len(points)


def prompt_features(green: Sequence, red: Sequence, gt: np.ndarray) -> dict[str, float]:
    """Prompt-level features of one timestep (our reading of the PointPrompt feature study).

    Distances are in units of the image diagonal. G = green, R = red points, M = ground truth.
    - prompt_coverage = |hull(G) & M| / |M| (0 with fewer than 3 green points)
    - max_spread = largest distance between two points of G u R
    - avg_nn_distance = mean over G u R of the distance to the nearest other point
    - chamfer_inclusion_exclusion = (mean_g min_r d(g, r) + mean_r min_g d(g, r)) / 2
    - exclusion_spread = largest distance between two red points
    - inclusion_efficiency = share of green points inside M
    - inclusion_encasing = share of green points inside hull(R) (red points surround them)
    - exclusion_encasing = share of red points inside hull(G)
    NaN where a feature is undefined (too few points).
    """
    gt = np.asarray(gt)
    gt = gt if gt.dtype == bool else gt.astype(bool)
    if gt.ndim != 2:
        raise ValueError(f"gt must be a 2-D mask, got shape {gt.shape}")
    g = np.asarray(green, dtype=np.float64).reshape(-1, 2)
    r = np.asarray(red, dtype=np.float64).reshape(-1, 2)
    both = np.concatenate([g, r])
    diag = math.hypot(*gt.shape)
    nan = math.nan
    out: dict[str, float] = {"n_green": float(len(g)), "n_red": float(len(r))}
    area = int(np.count_nonzero(gt))
    green_hull = _hull_mask(g, gt.shape) if len(g) >= 3 else None  # once: coverage, encasing
    out["prompt_coverage"] = (
        (float(np.count_nonzero(green_hull & gt) / area) if green_hull is not None else 0.0)
        if area
        else nan
    )
    if len(both) >= 2:
        d = _pairwise(both, both)
        out["max_spread"] = float(d.max() / diag)
        np.fill_diagonal(d, np.inf)
        out["avg_nn_distance"] = float(d.min(axis=1).mean() / diag)
    else:
        out["max_spread"] = out["avg_nn_distance"] = nan
    if len(g) and len(r):
        d = _pairwise(g, r)
        out["chamfer_inclusion_exclusion"] = float(
            (d.min(axis=1).mean() + d.min(axis=0).mean()) / 2 / diag
        )
    else:
        out["chamfer_inclusion_exclusion"] = nan
    out["exclusion_spread"] = float(_pairwise(r, r).max() / diag) if len(r) >= 2 else nan
    out["inclusion_efficiency"] = _inside_share(g, gt) if len(g) else nan
    out["inclusion_encasing"] = (
        _inside_share(g, _hull_mask(r, gt.shape)) if len(g) and len(r) >= 3 else nan
    )
    out["exclusion_encasing"] = (
        _inside_share(r, green_hull) if len(r) and green_hull is not None else nan
    )
    return out


def features_of(items: list) -> list[list[dict]]:
    """prompt_features of many timesteps (a pool task of the tidy export): `items` are
    (mask shape, bit-packed mask, [(green, red), ...]) per assignment."""
    out = []
    for shape, packed, points in items:
        gt = np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)
        out.append([prompt_features(g, r, gt) for g, r in points])
    return out


# ----------------------------------------------------------------------------- baselines


def baseline_comparison(
    figures: Iterable[AssignmentFigures], baselines: Iterable[dict]
) -> list[dict]:
    """Human vs automated: mean (95% CI) of human first / best / final and of each strategy's IoU.

    `baselines` are rows with `strategy` and `iou`.
    """
    figs = [f for f in figures if f.T > 0]
    rows = []
    for label, values in (
        ("human first", [f.first for f in figs]),
        ("human best", [f.best for f in figs]),
        ("human final", [f.final for f in figs]),
    ):
        ci = mean_ci95(values)
        rows.append(
            {"method": label, "n": ci.n, "mean_iou": ci.mean, "ci_low": ci.low, "ci_high": ci.high}
        )
    by_strategy: dict[str, list[float]] = defaultdict(list)
    for row in baselines:
        by_strategy[row["strategy"]].append(row["iou"])
    for strategy in sorted(by_strategy):
        ci = mean_ci95(by_strategy[strategy])
        rows.append(
            {
                "method": f"auto {strategy}",
                "n": ci.n,
                "mean_iou": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
            }
        )
    return rows


# ----------------------------------------------------------------------------- loader (ORM)


def assignment_log(
    meta: dict, rows: list[dict], span: tuple[float | None, float | None]
) -> AssignmentLog:
    """Build one record from plain rows (`meta`: assignment id, participant, dataset, index, stop reason)."""
    steps = tuple(
        TimestepRecord(
            t=row["timestep"],
            round=row["round"],
            green=tuple(tuple(p) for p in row["green"]),
            red=tuple(tuple(p) for p in row["red"]),
            iou=float(row["iou"]),
            time_s=row["server_ts"].timestamp(),
        )
        for row in rows
    )
    return AssignmentLog(timesteps=steps, start_s=span[0], end_s=span[1], **meta)


ANALYSIS_FIELDS = ("assignment_id", "timestep", "round", "green", "red", "iou", "server_ts")
ID_CHUNK = 500  # assignment ids per query (SQLite's limit on query parameters)


def analysis_timesteps(study, only: Sequence[int] | None = None):
    """(assignment id, timestep rows in seq order) of the study's real assignments, ordered by
    assignment; only the columns the figures use (never the masks, the answers or the
    points' history). `only`: those assignments' alone."""
    from itertools import groupby

    from studies.models import PromptEvent

    base = PromptEvent.objects.filter(timestep__isnull=False, assignment__practice=False)
    if only is None:
        queries = [base.filter(assignment__participant__study=study)]
    else:
        ids = sorted(only)
        queries = [
            base.filter(assignment_id__in=ids[i : i + ID_CHUNK])
            for i in range(0, len(ids), ID_CHUNK)
        ]
    for query in queries:
        rows = query.order_by("assignment_id", "seq").values(*ANALYSIS_FIELDS)
        rows = rows.iterator(chunk_size=5000) if only is None else iter(list(rows))
        for assignment_id, group in groupby(rows, key=lambda row: row["assignment_id"]):
            yield assignment_id, list(group)


def load_logs(
    study, arm: str | None = None, only: Sequence[int] | None = None
) -> list[AssignmentLog]:
    """Every assignment of a study's participants (excluded ones left out) as an AssignmentLog
    (streams the events, one pass); only those of design arm `arm` when given, only the
    assignments `only` when given (then in the study's order chunk by chunk only: callers
    that mix chunks order the logs themselves)."""
    from django.db.models import Max, Min

    from studies.models import Assignment

    assignments = (
        Assignment.objects.real()
        .filter(  # practice: not study data
            participant__study=study,
            participant__excluded=False,  # excluded: out of the analysis
        )
        .annotate(first_ts=Min("events__server_ts"), last_ts=Max("events__server_ts"))
    )
    if arm is not None:
        assignments = assignments.filter(arm=arm)
    metas = []
    if only is None:
        metas.append(assignments)
    else:
        ids = sorted(only)
        metas += [
            assignments.filter(pk__in=ids[i : i + ID_CHUNK]) for i in range(0, len(ids), ID_CHUNK)
        ]
    meta = {}
    for query in metas:
        for a in query.values(
            "pk", "participant__code", "image__index", "stop_reason", "first_ts", "last_ts"
        ).order_by("participant__number", "order"):
            meta[a["pk"]] = a
    steps = dict(analysis_timesteps(study, None if only is None else list(meta)))
    logs = []
    for pk, a in meta.items():
        logs.append(
            assignment_log(
                {
                    "assignment_id": pk,
                    "participant": a["participant__code"],
                    "dataset": study.dataset.name,
                    "image_index": a["image__index"],
                    "stop_reason": a["stop_reason"] or "",
                },
                steps.get(pk, []),
                (
                    a["first_ts"].timestamp() if a["first_ts"] else None,
                    a["last_ts"].timestamp() if a["last_ts"] else None,
                ),
            )
        )
    return logs
