"""Humans against automated prompts (interventions.prompt_comparison) on hand-made scores,
against a plain computation written here."""

import math

import numpy as np
import pytest

from interventions.intervals import mean_ci95
from interventions.prompt_comparison import (
    COLUMNS,
    OVERALL,
    AutomatedScore,
    HumanScore,
    compare,
    humans_higher_pct,
    labelled,
)

HUMANS = [
    HumanScore("Bird", 0.5, 0.9, 0.8),
    HumanScore("Bird", 0.3, 0.7, 0.7),
    HumanScore("Bird", 0.6, 0.8, 0.4),
    HumanScore("Tie", 0.2, 0.6, 0.6),
    HumanScore("Tie", 0.4, 0.5, 0.3),
]
AUTO = [
    AutomatedScore("Bird", "rand", "human_best", 0, 0.4),
    AutomatedScore("Bird", "rand", "human_best", 0, 0.6),
    AutomatedScore("Bird", "kmediod", "fixed", 0, 0.5),
    AutomatedScore("Tie", "rand", "human_best", 0, 0.25),
    AutomatedScore("Tie", "zero", "fixed", 3, 0.0),
]


def plain(dataset, strategy, source, seed):
    people = [h for h in HUMANS if dataset in (OVERALL, h.dataset)]
    auto = [
        a.iou
        for a in AUTO
        if dataset in (OVERALL, a.dataset)
        and (a.strategy, a.count_source, a.seed) == (strategy, source, seed)
    ]
    out = {
        "n_human": len(people),
        "n_automated": len(auto),
        "automated_mean_iou": sum(auto) / len(auto),
    }
    for m in ("first", "best", "final"):
        values = [getattr(h, m) for h in people]
        mean = sum(values) / len(values)
        out[f"human_{m}_mean_iou"] = mean
        ci = mean_ci95(values)
        out[f"human_{m}_ci_low"], out[f"human_{m}_ci_high"] = ci.low, ci.high
        a = out["automated_mean_iou"]
        out[f"humans_{m}_higher_pct"] = (mean - a) / a * 100 if a else math.nan
    ci = mean_ci95(auto)
    out["automated_ci_low"], out["automated_ci_high"] = ci.low, ci.high
    return out


def test_rows_per_data_set_and_overall_equal_a_plain_computation():
    rows = compare(HUMANS, AUTO)
    assert all(tuple(r) == COLUMNS for r in rows)
    keys = [(r["dataset"], r["strategy"], r["count_source"], r["seed"]) for r in rows]
    assert keys == [
        ("Bird", "kmediod", "fixed", 0),
        ("Bird", "rand", "human_best", 0),
        ("Tie", "rand", "human_best", 0),
        ("Tie", "zero", "fixed", 3),
        (OVERALL, "kmediod", "fixed", 0),
        (OVERALL, "rand", "human_best", 0),
        (OVERALL, "zero", "fixed", 3),
    ]
    for row, key in zip(rows, keys, strict=True):
        for column, value in plain(*key).items():
            got = row[column]
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), (key, column)
            else:
                assert got == pytest.approx(value, abs=1e-12), (key, column)
    overall_rand = rows[5]
    # pooled over both data sets: 4 prompts, 5 image x annotator units
    assert overall_rand["n_automated"] == 3 and overall_rand["n_human"] == 5
    assert overall_rand["automated_mean_iou"] == pytest.approx(np.mean([0.4, 0.6, 0.25]))
    assert overall_rand["humans_best_higher_pct"] == pytest.approx(
        100
        * (np.mean([0.9, 0.7, 0.8, 0.6, 0.5]) - np.mean([0.4, 0.6, 0.25]))
        / np.mean([0.4, 0.6, 0.25])
    )


def test_the_gap_is_relative_to_the_strategy_mean():
    assert humans_higher_pct(0.9, 0.6) == pytest.approx(50.0)
    assert humans_higher_pct(0.3, 0.6) == pytest.approx(-50.0)
    assert math.isnan(humans_higher_pct(0.5, 0.0)) and math.isnan(humans_higher_pct(math.nan, 0.5))


def test_groups_without_automated_prompts_and_labels():
    rows = compare(HUMANS[:3], [])
    assert [(r["dataset"], r["strategy"]) for r in rows] == [("Bird", ""), (OVERALL, "")]
    assert rows[0]["n_automated"] == 0 and math.isnan(rows[0]["humans_best_higher_pct"])
    assert compare([], []) == []
    two_seeds = AUTO + [AutomatedScore("Bird", "rand", "human_best", 7, 0.1)]
    methods = {r["method"] for r in labelled(compare(HUMANS, two_seeds))}
    assert methods == {"kmediod", "zero", "rand (human_best, seed 0)", "rand (human_best, seed 7)"}
