"""The arm comparison of an experiment (studies/core/design_stats.py) on generated studies with
a known effect, its bootstrap against a plain loop, and the dropout table."""

import math
import warnings

import numpy as np
import pytest

from studies.core.design_stats import compare_arms, dropout_table

N_BOOT = 500


def generated(method, effect, *, participants=40, images=8, seed=1, arms=("A", "B")):
    """Rows of a study with participant and image random intercepts; between: participant k
    in arm k % len(arms) on every image; within: every participant in every arm, image i in
    arm (i + k) % len(arms). Participant k skips its first k % 3 images, so participants have
    unequal numbers of rows (the mean of participant means differs from the mean of rows)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.05, participants)
    v = rng.normal(0, 0.04, images)
    rows = []
    for k in range(participants):
        for i in range(k % 3, images):
            a = k % len(arms) if method == "between" else (i + k) % len(arms)
            y = 0.5 + effect * a + u[k] + v[i] + rng.normal(0, 0.05)
            rows.append({"participant": f"p{k}", "image": i, "arm": arms[a], "iou": y})
    return rows


def participant_means(rows, arm):
    by = {}
    for r in rows:
        if r["arm"] == arm and r["iou"] is not None:
            by.setdefault(r["participant"], []).append(float(r["iou"]))
    return {p: sum(v) / len(v) for p, v in by.items()}


@pytest.mark.parametrize("method", ["between", "within"])
def test_large_planted_effect_is_inside_both_intervals_which_exclude_zero(method):
    rows = generated(method, 0.15)
    (r,) = compare_arms(rows, "iou", arms=["A", "B"], method=method, n_boot=N_BOOT)
    assert (r["arm"], r["reference"], r["outcome"]) == ("B", "A", "iou")
    assert 0 < r["ci_low"] < 0.15 < r["ci_high"]
    assert 0 < r["model_ci_low"] < 0.15 < r["model_ci_high"]
    assert r["ci_low"] <= r["difference"] <= r["ci_high"]
    assert r["model_p"] < 1e-6
    assert r["model_note"] == ""
    assert abs(r["model_estimate"] - 0.15) < 0.03
    assert math.isclose(
        r["model_ci_high"] - r["model_ci_low"], 2 * 1.96 * r["model_se"], rel_tol=1e-3
    )
    # every participant weighs the same: the mean of participant means, not of rows
    arm, ref = participant_means(rows, "B"), participant_means(rows, "A")
    assert r["mean_arm"] == pytest.approx(np.mean(list(arm.values())), abs=1e-12)
    assert r["mean_reference"] == pytest.approx(np.mean(list(ref.values())), abs=1e-12)
    assert r["difference"] == pytest.approx(r["mean_arm"] - r["mean_reference"], abs=1e-12)
    row_mean = np.mean([x["iou"] for x in rows if x["arm"] == "B"])
    assert abs(r["mean_arm"] - row_mean) > 1e-6
    assert r["n_rows_arm"] == sum(x["arm"] == "B" for x in rows)
    assert r["n_participants_arm"] == len(arm)
    assert r["n_participants_reference"] == len(ref)
    assert r["n_participants_arm"] == (20 if method == "between" else 40)


@pytest.mark.parametrize("method", ["between", "within"])
def test_null_effect_intervals_contain_zero(method):
    (r,) = compare_arms(
        generated(method, 0.0, seed=5), "iou", arms=["A", "B"], method=method, n_boot=N_BOOT
    )
    assert r["ci_low"] < 0 < r["ci_high"]
    assert r["model_ci_low"] < 0 < r["model_ci_high"]
    assert r["model_p"] > 0.05


def test_between_bootstrap_matches_a_plain_loop():
    rows = generated("between", 0.05, participants=12, images=4)
    (r,) = compare_arms(rows, "iou", arms=["A", "B"], method="between", seed=3, n_boot=200)
    a = np.array(list(participant_means(rows, "B").values()))
    ref = np.array(list(participant_means(rows, "A").values()))
    rng = np.random.default_rng(3)
    # the arm's resamples first, then the reference's, each one participant draw at a time
    boot_a = [np.mean([a[rng.integers(0, a.size)] for _ in range(a.size)]) for _ in range(200)]
    boot_r = [
        np.mean([ref[rng.integers(0, ref.size)] for _ in range(ref.size)]) for _ in range(200)
    ]
    low, high = np.percentile(np.subtract(boot_a, boot_r), [2.5, 97.5])
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_within_bootstrap_resamples_paired_participants_like_a_plain_loop():
    rows = generated("within", 0.05, participants=10, images=6)
    # p0 has no rows in B: it is not paired, so it is left out of the means and the interval
    rows = [x for x in rows if not (x["participant"] == "p0" and x["arm"] == "B")]
    (r,) = compare_arms(rows, "iou", arms=["A", "B"], method="within", seed=4, n_boot=200)
    arm, ref = participant_means(rows, "B"), participant_means(rows, "A")
    paired = [p for p in ref if p in arm]
    assert r["n_participants_paired"] == 9
    assert r["n_participants_reference"] == 10
    d = np.array([arm[p] - ref[p] for p in paired])
    assert r["difference"] == pytest.approx(d.mean(), abs=1e-12)
    rng = np.random.default_rng(4)
    boot = [np.mean([d[rng.integers(0, d.size)] for _ in range(d.size)]) for _ in range(200)]
    low, high = np.percentile(boot, [2.5, 97.5])
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_binary_outcome_difference_in_proportions():
    rng = np.random.default_rng(2)
    rows = []
    for k in range(60):
        arm = "B" if k % 2 else "A"
        for i in range(8):
            rows.append(
                {
                    "participant": k,
                    "image": f"img{i}",
                    "arm": arm,
                    "hit": bool(rng.random() < (0.75 if arm == "B" else 0.4)),
                }
            )
    (r,) = compare_arms(rows, "hit", arms=["A", "B"], method="between", binary=True, n_boot=N_BOOT)
    assert 0 < r["ci_low"] < 0.35 < r["ci_high"]
    assert r["model_ci_low"] < 0.35 < r["model_ci_high"]
    assert r["model_ci_low"] > 0
    assert "linear probability" in r["model"]
    share_b = np.mean([x["hit"] for x in rows if x["arm"] == "B"])
    assert r["mean_arm"] == pytest.approx(share_b)  # equal rows per participant here
    assert r["model_estimate"] == pytest.approx(r["difference"], abs=1e-9)  # balanced design
    with pytest.raises(ValueError, match="binary"):
        compare_arms(
            [{**rows[0], "hit": 0.5}], "hit", arms=["A", "B"], method="between", binary=True
        )


def test_same_seed_same_answer_other_seed_other_interval():
    rows = generated("between", 0.05, participants=16, images=4)
    one = compare_arms(rows, "iou", arms=["A", "B"], method="between", seed=7, n_boot=N_BOOT)
    two = compare_arms(rows, "iou", arms=["A", "B"], method="between", seed=7, n_boot=N_BOOT)
    other = compare_arms(rows, "iou", arms=["A", "B"], method="between", seed=8, n_boot=N_BOOT)
    assert one == two
    assert (one[0]["ci_low"], one[0]["ci_high"]) != (other[0]["ci_low"], other[0]["ci_high"])
    assert one[0]["model_estimate"] == other[0]["model_estimate"]


def test_missing_outcomes_are_dropped():
    rows = generated("within", 0.05, participants=12, images=4)
    holes = [
        {"participant": "p1", "image": 99, "arm": "B", "iou": None},
        {"participant": "p2", "image": 98, "arm": "A", "iou": math.nan},
        {"participant": "ghost", "image": 97, "arm": "B", "iou": None},
    ]
    clean = compare_arms(rows, "iou", arms=["A", "B"], method="within", n_boot=N_BOOT)
    holed = compare_arms(rows + holes, "iou", arms=["A", "B"], method="within", n_boot=N_BOOT)
    assert holed == clean
    assert clean[0]["n_rows_arm"] == sum(x["arm"] == "B" for x in rows)


def test_too_few_participants_gives_no_interval_and_no_model():
    rows = [
        {"participant": "a", "image": 1, "arm": "A", "iou": 0.5},
        {"participant": "b", "image": 2, "arm": "A", "iou": 0.7},
        {"participant": "c", "image": 1, "arm": "B", "iou": 0.9},
        {"participant": "c", "image": 2, "arm": "B", "iou": 0.8},
    ]
    (r,) = compare_arms(rows, "iou", arms=["A", "B"], method="between")
    assert r["difference"] == pytest.approx(0.85 - 0.6)
    assert r["ci_low"] is None and r["ci_high"] is None
    assert r["model_estimate"] is None and r["model_p"] is None and r["model_se"] is None
    assert "fewer than 2 participants" in r["model_note"]
    # within: one participant with data in both arms is too few as well
    (w,) = compare_arms(rows, "iou", arms=["A", "B"], method="within")
    assert w["n_participants_paired"] == 0
    assert w["ci_low"] is None and w["model_estimate"] is None
    assert w["mean_arm"] is None and w["difference"] is None
    # an arm with no rows at all
    (e,) = compare_arms(rows[:2], "iou", arms=["A", "B"], method="between")
    assert e["n_participants_arm"] == 0 and e["mean_arm"] is None and e["ci_low"] is None


def test_each_arm_against_the_reference_independent_of_other_arms():
    rows = generated("between", 0.1, participants=30, images=4, arms=("A", "B", "C"))
    both = compare_arms(rows, "iou", arms=["A", "B", "C"], method="between", n_boot=N_BOOT)
    assert [(r["arm"], r["reference"]) for r in both] == [("B", "A"), ("C", "A")]
    assert both[1]["difference"] > both[0]["difference"] > 0
    only_b = compare_arms(
        [x for x in rows if x["arm"] != "C"],
        "iou",
        arms=["A", "B"],
        method="between",
        n_boot=N_BOOT,
    )
    assert only_b[0] == both[0]


def test_design_violations_raise():
    rows = [
        {"participant": "a", "image": 1, "arm": "A", "iou": 0.5},
        {"participant": "a", "image": 2, "arm": "B", "iou": 0.7},
    ]
    with pytest.raises(ValueError, match="between"):
        compare_arms(rows, "iou", arms=["A", "B"], method="between")
    with pytest.raises(ValueError, match="not one of"):
        compare_arms(rows, "iou", arms=["A", "C"], method="within")
    with pytest.raises(ValueError, match="method"):
        compare_arms(rows, "iou", arms=["A", "B"], method="crossover")


def test_dropout_table_shares_of_consented():
    people = (
        [{"arm": "A", "consented": True, "started": True, "finished": True}] * 3
        + [{"arm": "A", "consented": True, "started": True, "finished": False}] * 2
        + [{"arm": "A", "consented": True, "started": False, "finished": False}] * 5
        + [{"arm": "B", "consented": True, "started": False, "finished": False}] * 4
        # not consented: counts nowhere, even with later flags set
        + [{"arm": "B", "consented": False, "started": True, "finished": True}]
    )
    table = dropout_table(people, ["A", "B", "C"])
    assert table[0] == {
        "arm": "A",
        "consented": 10,
        "started": 5,
        "finished": 3,
        "started_share": 0.5,
        "finished_share": 0.3,
    }
    assert table[1]["consented"] == 4 and table[1]["started"] == 0
    assert table[1]["started_share"] == 0.0 and table[1]["finished_share"] == 0.0
    assert table[2] == {
        "arm": "C",
        "consented": 0,
        "started": 0,
        "finished": 0,
        "started_share": None,
        "finished_share": None,
    }


def test_model_is_the_formula_fit_of_crossed_intercepts():
    """Oracle: statsmodels' own formula way of crossed random intercepts, on the same rows."""
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    rows = generated("within", 0.05, participants=16, images=6, seed=9)
    (r,) = compare_arms(rows, "iou", arms=["A", "B"], method="within", n_boot=N_BOOT)
    frame = pd.DataFrame(rows).assign(x=lambda d: (d["arm"] == "B").astype(float), g=0)
    model = MixedLM.from_formula(
        "iou ~ x",
        frame,
        groups="g",
        re_formula="0",
        vc_formula={"participant": "0 + C(participant)", "image": "0 + C(image)"},
    )
    with warnings.catch_warnings():  # its absolute "boundary" heuristic (variances < 0.01)
        warnings.simplefilter("ignore")
        fit = model.fit(reml=True, method=["bfgs"])
    assert r["model_estimate"] == pytest.approx(fit.fe_params["x"], abs=1e-6)
    assert r["model_se"] == pytest.approx(fit.bse_fe["x"], rel=1e-3)
    assert r["model_p"] == pytest.approx(fit.pvalues["x"], rel=1e-2, abs=1e-12)
