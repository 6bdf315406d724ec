"""Humans against automated prompts, the comparison of the PointPrompt paper (Quesada et al.,
2024: its human-vs-automated-strategies table): per data set and
over all data sets, the mean IoU of the human first / best / final prompt of every scored image
x annotator, against the mean IoU of each automated strategy's prompts, each with its seeded 95%
bootstrap interval (`interventions.intervals`), and the relative gap

    humans x% higher = 100 * (human mean - strategy mean) / strategy mean

(relative to the strategy's mean; negative when the humans score lower; no value when the
strategy's mean is 0 or either side has no value). "Overall" pools every unit of every data set
(each scored image x annotator once, each automated prompt once), so larger data sets weigh
more, as a pooled mean does.

An automated method is one (strategy, count source, seed) of the stored baseline results, so
any strategy name works (the old families and the released names alike). Plain records in,
plain rows out: no Django.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from interventions.intervals import mean_ci95

HUMAN_MEASURES = ("first", "best", "final")
OVERALL = "overall"
COLUMNS = (
    "dataset",
    "strategy",
    "count_source",
    "seed",
    "n_automated",
    "automated_mean_iou",
    "automated_ci_low",
    "automated_ci_high",
    "n_human",
    *(
        f"{prefix}{measure}{suffix}"
        for measure in HUMAN_MEASURES
        for prefix, suffix in (
            ("human_", "_mean_iou"),
            ("human_", "_ci_low"),
            ("human_", "_ci_high"),
            ("humans_", "_higher_pct"),
        )
    ),
)


@dataclass(frozen=True)
class HumanScore:
    """One scored image x annotator: the IoU of its first, best and final timestep."""

    dataset: str
    first: float
    best: float
    final: float


@dataclass(frozen=True)
class AutomatedScore:
    """One automated prompt's IoU, and the method that made it."""

    dataset: str
    strategy: str
    count_source: str
    seed: int
    iou: float


def humans_higher_pct(human_mean: float, strategy_mean: float) -> float:
    """100 * (human - strategy) / strategy; NaN when the strategy's mean is 0 or a side is NaN."""
    if math.isnan(human_mean) or math.isnan(strategy_mean) or strategy_mean == 0:
        return math.nan
    return 100.0 * (human_mean - strategy_mean) / strategy_mean


def method_label(strategy: str, count_source: str, seed: int, unique: bool) -> str:
    """The strategy's name, with its count source and seed when it ran more than one way."""
    return strategy if unique else f"{strategy} ({count_source}, seed {seed})"


def compare(humans: Iterable[HumanScore], automated: Iterable[AutomatedScore]) -> list[dict]:
    """One row (the keys of COLUMNS) per data set x automated method, data sets sorted by name
    and then OVERALL; methods sorted by strategy, count source, seed. A group without automated
    prompts gets one row with the human columns only (strategy "")."""
    human_groups: dict[str, list[HumanScore]] = defaultdict(list)
    for h in humans:
        human_groups[h.dataset].append(h)
        human_groups[OVERALL].append(h)
    auto_groups: dict[str, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in automated:
        method = (a.strategy, a.count_source, int(a.seed))
        auto_groups[a.dataset][method].append(a.iou)
        auto_groups[OVERALL][method].append(a.iou)
    datasets = sorted((set(human_groups) | set(auto_groups)) - {OVERALL})
    rows = []
    for group in [*datasets, OVERALL] if datasets else []:
        people = human_groups.get(group, [])
        human = {m: mean_ci95([getattr(h, m) for h in people]) for m in HUMAN_MEASURES}
        methods = auto_groups.get(group, {})
        for method in sorted(methods) or [None]:
            auto = mean_ci95(methods[method]) if method else mean_ci95([])
            row = {
                "dataset": group,
                "strategy": method[0] if method else "",
                "count_source": method[1] if method else "",
                "seed": method[2] if method else None,
                "n_automated": auto.n,
                "automated_mean_iou": auto.mean,
                "automated_ci_low": auto.low,
                "automated_ci_high": auto.high,
                "n_human": len(people),
            }
            for m in HUMAN_MEASURES:
                row[f"human_{m}_mean_iou"] = human[m].mean
                row[f"human_{m}_ci_low"] = human[m].low
                row[f"human_{m}_ci_high"] = human[m].high
                row[f"humans_{m}_higher_pct"] = humans_higher_pct(human[m].mean, auto.mean)
            rows.append(row)
    return rows


def labelled(rows: list[dict]) -> list[dict]:
    """The rows with a display `method` label: the strategy's name, with its count source and
    seed where the same strategy ran more than one way."""
    ways: dict[str, set] = defaultdict(set)
    for r in rows:
        if r["strategy"]:
            ways[r["strategy"]].add((r["count_source"], r["seed"]))
    return [
        {
            **r,
            "method": method_label(
                r["strategy"], r["count_source"], r["seed"], len(ways[r["strategy"]]) == 1
            )
            if r["strategy"]
            else "",
        }
        for r in rows
    ]
