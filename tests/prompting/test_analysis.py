"""The overprompting figures on hand-made event logs with known answers."""

import math

import numpy as np
import pytest

from studies.prompting.analysis import (
    AssignmentLog,
    TimestepRecord,
    assignment_figures,
    baseline_comparison,
    iou_curve,
    mean_ci95,
    prompt_features,
    summaries,
    summarise,
)


def step(t, rnd, iou, n_green=1, n_red=1, time_s=None):
    return TimestepRecord(
        t=t, round=rnd, green=tuple((float(i), 0.0) for i in range(n_green)),
        red=tuple((float(i), 5.0) for i in range(n_red)), iou=iou, time_s=100.0 + (t if time_s is None else time_s),
    )  # fmt: skip


def log(
    steps, stop="finished", participant="st1", dataset="D", index=0, aid=1, start=99.0, end=None
):
    end = end if end is not None else (steps[-1].time_s + 1 if steps else None)
    return AssignmentLog(aid, participant, dataset, index, stop, start, end, tuple(steps))


def test_overprompted_annotator_ended_image():
    # scores 0.5, 0.8, 0.7, 0.6 (round 1), annotator finished: best at t=1, 2 excess, loss 0.2
    steps = [step(0, 1, 0.5), step(1, 1, 0.8, 2, 1), step(2, 1, 0.7, 2, 2), step(3, 1, 0.6, 3, 2)]
    f = assignment_figures(log(steps))
    assert (f.T, f.first, f.best, f.final) == (4, 0.5, 0.8, 0.6)
    assert (f.best_timestep, f.best_round, f.excess_after_best) == (1, 1, 2)
    assert f.loss == pytest.approx(0.2) and f.overprompted and not f.stagnation_ended
    assert (f.points_at_best, f.green_at_best, f.red_at_best, f.points_at_final) == (3, 2, 1, 5)
    assert f.time_to_best_s == pytest.approx(101.0 - 99.0) and f.total_time_s == pytest.approx(
        104.0 - 99.0
    )


def test_ties_keep_the_first_best_and_excess_counts_only_its_round():
    steps = [step(0, 1, 0.9), step(1, 1, 0.9), step(2, 1, 0.4), step(3, 2, 0.3), step(4, 2, 0.95)]
    f = assignment_figures(log(steps))
    assert f.best_timestep == 4 and f.excess_after_best == 0 and not f.overprompted and f.loss == 0
    steps = [step(0, 1, 0.9), step(1, 1, 0.9), step(2, 1, 0.4), step(3, 2, 0.3), step(4, 2, 0.5)]
    f = assignment_figures(log(steps))
    assert (
        f.best_timestep == 0 and f.best_round == 1 and f.excess_after_best == 2
    )  # t=1, 2 in round 1
    assert f.overprompted and f.loss == pytest.approx(0.4)


def test_stagnation_ended_is_not_overprompting_and_empty_logs():
    steps = [step(0, 1, 0.8), step(1, 1, 0.7)]
    f = assignment_figures(log(steps, stop="stagnation"))
    assert f.final_below_best and f.stagnation_ended and not f.overprompted
    empty = assignment_figures(log([], stop="", start=None))
    assert (
        empty.T == 0
        and empty.best is None
        and not empty.overprompted
        and empty.total_time_s is None
    )


def test_summaries_per_participant_dataset_study():
    figs = [
        assignment_figures(
            log([step(0, 1, 0.8), step(1, 1, 0.6)], participant="st1", aid=1)
        ),  # over, loss .2
        assignment_figures(
            log([step(0, 1, 0.5), step(1, 1, 0.7)], participant="st1", aid=2)
        ),  # fine
        assignment_figures(
            log([step(0, 1, 0.9), step(1, 1, 0.3)], stop="stagnation", participant="st2", aid=3)
        ),
        assignment_figures(log([], stop="", participant="st2", aid=4)),
    ]
    by = {row["group"]: row for row in summarise(figs, "participant")}
    assert by["st1"]["annotator_ended"] == 2 and by["st1"]["share_overprompted"] == 0.5
    assert by["st1"]["mean_loss"] == pytest.approx(0.1) and by["st1"]["mean_excess"] == 0.5
    assert by["st2"]["annotator_ended"] == 0 and math.isnan(by["st2"]["share_overprompted"])
    assert (
        by["st2"]["stagnation_ended"] == 1 and by["st2"]["stagnation_share_final_below_best"] == 1.0
    )
    assert by["st2"]["stagnation_mean_loss"] == pytest.approx(0.6) and by["st2"]["assignments"] == 2
    study = summaries(figs)["study"][0]
    assert (
        study["overprompted"] == 1
        and study["scored"] == 3
        and study["mean_best"] == pytest.approx((0.8 + 0.7 + 0.9) / 3)
    )


def test_mean_ci95_is_a_seeded_bootstrap_percentile_interval():
    values = [0.2, 0.4, 0.9, 0.5]
    ci = mean_ci95(values)
    # the plain loop the docstring describes
    rng = np.random.default_rng(0)
    means = [np.mean(np.asarray(values)[rng.integers(0, 4, 4)]) for _ in range(2000)]
    low, high = np.percentile(means, [2.5, 97.5])
    assert ci.n == 4 and ci.mean == pytest.approx(0.5)
    assert ci.low == pytest.approx(low) and ci.high == pytest.approx(high)
    assert mean_ci95(values) == ci  # seeded: the same values give the same interval
    assert 0.2 <= ci.low < ci.mean < ci.high <= 0.9


def test_mean_ci95_edge_cases_stay_in_range():
    empty = mean_ci95([])
    assert empty.n == 0 and all(math.isnan(x) for x in (empty.mean, empty.low, empty.high))
    one = mean_ci95([0.3])
    assert one.n == 1 and one.mean == 0.3 and math.isnan(one.low) and math.isnan(one.high)
    two = mean_ci95([0.0, 1.0])
    assert two.n == 2 and 0.0 <= two.low <= 0.5 <= two.high <= 1.0
    # the Student interval here would be 0.5 +- 6.35: far outside [0, 1]
    assert two.low == 0.0 and two.high == 1.0
    ones = mean_ci95([1.0] * 7)
    assert (ones.mean, ones.low, ones.high) == (1.0, 1.0, 1.0)
    skewed = mean_ci95([1.0] * 9 + [0.0])
    assert 0.0 <= skewed.low < skewed.high <= 1.0
    long = mean_ci95(np.linspace(0, 1, 5001))  # chunked resampling gives a narrow interval
    assert long.low < 0.5 < long.high and long.high - long.low < 0.05


def test_iou_curves_by_points_and_timestep():
    logs = [
        log([step(0, 1, 0.2), step(1, 1, 0.6, 2, 1)]),
        log([step(0, 1, 0.4), step(1, 1, 0.8, 1, 2)], aid=2),
    ]
    by_points = {row["points"]: row for row in iou_curve(logs, "points")}
    assert (
        by_points[2]["mean_iou"] == pytest.approx(0.3)
        and by_points[3]["n"] == 2
        and by_points[3]["mean_iou"] == pytest.approx(0.7)
    )
    by_t = iou_curve(logs, "timestep")
    assert [r["timestep"] for r in by_t] == [0, 1] and by_t[1]["mean_iou"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="by must be"):
        iou_curve(logs, "round")


def test_prompt_features_known_answers():
    gt = np.zeros((100, 100), bool)
    gt[20:60, 20:60] = True  # 40 x 40 square
    diag = math.hypot(100, 100)
    green = [(20, 20), (59, 20), (59, 59), (20, 59), (40, 40)]  # the square's corners + centre
    red = [(0, 0), (99, 0), (99, 99), (0, 99)]  # image corners: they encase the green points
    f = prompt_features(green, red, gt)
    assert f["prompt_coverage"] == pytest.approx(1.0)
    assert (
        f["inclusion_efficiency"] == 1.0
        and f["inclusion_encasing"] == 1.0
        and f["exclusion_encasing"] == 0.0
    )
    assert f["max_spread"] == pytest.approx(math.hypot(99, 99) / diag)
    assert f["exclusion_spread"] == pytest.approx(math.hypot(99, 99) / diag)
    # each image corner is nearest to its square corner (distance 20*sqrt2 or 40*sqrt2-ish)
    g, r = np.asarray(green, float), np.asarray(red, float)
    d = np.sqrt(((g[:, None] - r[None]) ** 2).sum(2))
    assert f["chamfer_inclusion_exclusion"] == pytest.approx(
        (d.min(1).mean() + d.min(0).mean()) / 2 / diag
    )
    half = prompt_features(
        [(20, 20), (59, 20), (20, 59), (5, 5)], [(90, 10)], gt
    )  # hull: about half the square
    assert half["inclusion_efficiency"] == 0.75 and 0.45 < half["prompt_coverage"] < 0.6
    assert math.isnan(half["exclusion_spread"]) and math.isnan(half["inclusion_encasing"])
    one = prompt_features([(30, 30)], [], gt)
    assert math.isnan(one["max_spread"]) and one["prompt_coverage"] == 0.0


def test_baseline_comparison_rows():
    figs = [assignment_figures(log([step(0, 1, 0.4), step(1, 1, 0.6)]))]
    rows = baseline_comparison(
        figs, [{"strategy": "random", "iou": 0.3}, {"strategy": "random", "iou": 0.5}]
    )
    by = {r["method"]: r for r in rows}
    assert (
        by["human best"]["mean_iou"] == 0.6
        and by["auto random"]["mean_iou"] == pytest.approx(0.4)
        and by["auto random"]["n"] == 2
    )
