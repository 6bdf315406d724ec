"""Humans against automated prompts on the prompting analysis page (docs/pointprompt.md
"Humans against automated prompts"): the study's figures and stored baseline results in, the
rows of `interventions.prompt_comparison` out, and their plot. No ORM beyond what the page
already loaded; matplotlib only (Agg)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from interventions.prompt_comparison import (
    HUMAN_MEASURES,
    OVERALL,
    AutomatedScore,
    HumanScore,
    compare,
    labelled,
)

HUMAN_COLOURS = {"first": "#9ecae1", "best": "#2171b5", "final": "#08306b"}  # blues
AUTOMATED_COLOURS = (  # no blue: the automated prompts never look like the humans
    "#e6550d",
    "#31a354",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#fdae6b",
)


def comparison_rows(figures: Iterable, baselines: Iterable[dict], dataset: str) -> list[dict]:
    """`figures`: AssignmentFigures (scored ones count); `baselines`: rows of `baseline_rows`
    (strategy, count_source, seed, iou), all on `dataset`."""
    humans = [HumanScore(f.dataset, f.first, f.best, f.final) for f in figures if f.T > 0]
    automated = [
        AutomatedScore(dataset, b["strategy"], b["count_source"], b["seed"], b["iou"])
        for b in baselines
    ]
    return compare(humans, automated)


def studies_comparison(studies: Iterable) -> list[dict]:
    """The rows over several prompting studies (e.g. the PointPrompt release, one imported
    study per data set): per data set and overall. Excluded participants are left out, as on
    the page."""
    from studies.prompting.analysis import assignment_figures, load_logs
    from studies.prompting.baselines import baseline_rows

    humans, automated = [], []
    for study in studies:
        for log in load_logs(study):
            f = assignment_figures(log)
            if f.T > 0:
                humans.append(HumanScore(study.dataset.name, f.first, f.best, f.final))
        automated += [
            AutomatedScore(
                study.dataset.name, b["strategy"], b["count_source"], b["seed"], b["iou"]
            )
            for b in baseline_rows(study)
        ]
    return compare(humans, automated)


def display_groups(rows: list[dict]) -> list[dict]:
    """The rows by data set for the page: {"dataset", "human": [(measure, mean, low, high)],
    "methods": labelled rows, "n_human"}; OVERALL only when there are several data sets."""
    rows = labelled(rows)
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    if len(names) == 2:  # one data set: its rows are the overall ones
        names = [n for n in names if n != OVERALL]
    groups = []
    for name in names:
        mine = [r for r in rows if r["dataset"] == name]
        first = mine[0]
        groups.append(
            {
                "dataset": name,
                "n_human": first["n_human"],
                "human": [
                    {
                        "measure": m,
                        "mean": first[f"human_{m}_mean_iou"],
                        "low": first[f"human_{m}_ci_low"],
                        "high": first[f"human_{m}_ci_high"],
                        "n": first["n_human"],
                    }
                    for m in HUMAN_MEASURES
                ],
                "methods": [
                    {**r, "gaps": [pct_text(r[f"humans_{m}_higher_pct"]) for m in HUMAN_MEASURES]}
                    for r in mine
                    if r["strategy"]
                ],
            }
        )
    return groups


def pct_text(value: float) -> str:
    """A relative gap as shown: "+12.3%" (humans higher), "-4.0%" (lower), "—" (no value)."""
    return "—" if value is None or math.isnan(value) else f"{value:+.1f}%"


def _err(mean: float, low: float, high: float) -> tuple[float, float]:
    if math.isnan(mean) or math.isnan(low) or math.isnan(high):
        return 0.0, 0.0
    return mean - low, high - mean


def draw_comparison(fig, rows: list[dict], title: str) -> None:
    """Grouped bars per data set: human first / best / final (blues), then each automated
    method (other colours, hatched), with their 95% bootstrap intervals."""
    ax = fig.add_subplot()
    groups = display_groups(rows)
    methods = sorted({r["method"] for g in groups for r in g["methods"]})
    colours = {m: AUTOMATED_COLOURS[k % len(AUTOMATED_COLOURS)] for k, m in enumerate(methods)}
    width = 0.8 / max(1, len(HUMAN_MEASURES) + len(methods))
    seen = set()
    for x, group in enumerate(groups):
        bars = [(f"human {h['measure']}", h["mean"], h["low"], h["high"]) for h in group["human"]]
        bars += [
            (
                r["method"],
                r["automated_mean_iou"],
                r["automated_ci_low"],
                r["automated_ci_high"],
            )
            for r in group["methods"]
        ]
        for k, (label, mean, low, high) in enumerate(bars):
            if math.isnan(mean):
                continue
            human = label.startswith("human ")
            ax.bar(
                x - 0.4 + width * (k + 0.5),
                mean,
                width,
                yerr=[[_err(mean, low, high)[0]], [_err(mean, low, high)[1]]],
                capsize=2,
                color=HUMAN_COLOURS[label[6:]] if human else colours[label],
                hatch=None if human else "//",
                edgecolor="white" if human else "black",
                linewidth=0.4,
                label=None if label in seen else label,
            )
            seen.add(label)
    ax.set_xticks(range(len(groups)), [g["dataset"] for g in groups], fontsize=10)
    ax.tick_params(axis="y", labelsize=10)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean IoU (95% bootstrap CI)", fontsize=10)
    ax.set_title(title, fontsize=11)
    if seen:
        ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no scored timestep yet", ha="center", va="center", fontsize=10)
