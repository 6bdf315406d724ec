"""Analysis by arm (docs/experiments.md "Analysis by arm"): the kind's main outcomes compared
between the arms of a study's design, with the dropout per arm, as tables, CSV and a plot.

A kind declares its outcomes (`StudyKind.arm_outcomes`: key, label, binary) and gives one row
per (participant, image) with them (`StudyKind.arm_units(study)`); the statistics are
`studies.core.design_stats.compare_arms` (bootstrap over participants, crossed mixed model).
Participants left out of the analysis (excluded, pilots) are left out here too; previews are
never in the study at all.
"""

from __future__ import annotations

import math

from studies.core import design
from studies.core.design_stats import compare_arms, interval_name
from studies.core.kinds import kind_of

N_BOOT = 2000


def comparison_rows(study, units: list[dict] | None = None) -> list[dict]:
    """One row per outcome and non-reference arm: the means, the difference, its bootstrap
    interval and the mixed model's estimate, interval and p-value. `units`: the kind's rows
    when the caller has them (the stored prompting analysis), else `kind.arm_units(study)`."""
    kind = kind_of(study)
    names = design.arm_names(study)
    if len(names) < 2:
        return []
    if units is None:
        units = kind.arm_units(study)
    rows = []
    for key, label, binary in kind.arm_outcomes:
        for row in compare_arms(
            units,
            key,
            arms=names,
            method=design.method(study),
            binary=binary,
            seed=study.design["seed"],
            n_boot=N_BOOT,
        ):
            rows.append({"label": label, "binary": binary, **row})
    return rows


def dropout_rows(study) -> list[dict]:
    from studies.core.design_summary import dropout

    return dropout(study)


def context(study, rows: list[dict] | None = None) -> dict:
    """The analysis page's comparison section (empty for a study without a design); `rows`:
    the comparison when the caller has it stored."""
    if not design.has_design(study):
        return {"arms": None}
    return {
        "arms": {
            "names": design.arm_names(study),
            "method": design.method(study),
            "rows": comparison_rows(study) if rows is None else rows,
            "dropout": dropout_rows(study),
            "interval": interval_name(design.method(study), N_BOOT, study.design["seed"]),
        }
    }


TABLES = {"arm_comparison": comparison_rows, "arm_dropout": dropout_rows}


def draw_comparison(fig, rows: list[dict]) -> None:
    """A forest plot, one panel per outcome (each on its own scale): each arm's difference from
    the reference with the bootstrap interval (filled) and the mixed model's interval (open)."""
    if not rows:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "No comparison yet: no arm has data", ha="center", va="center")
        ax.set_axis_off()
        return
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    outcomes = list(dict.fromkeys(r["outcome"] for r in rows))
    axes = fig.subplots(len(outcomes), 1, squeeze=False)[:, 0]
    for ax, outcome in zip(axes, outcomes, strict=True):
        mine = [r for r in rows if r["outcome"] == outcome]
        ys = list(range(len(mine)))[::-1]
        for y, r in zip(ys, mine, strict=True):
            d, lo, hi = r["difference"], r["ci_low"], r["ci_high"]
            if _finite(d):
                if _finite(lo) and _finite(hi):
                    ax.plot([lo, hi], [y + 0.15, y + 0.15], color=BOOT, lw=2.5)
                ax.plot([d], [y + 0.15], "o", color=BOOT)
            m = r.get("model_estimate")
            if _finite(m):
                ax.plot([r["model_ci_low"], r["model_ci_high"]], [y - 0.15, y - 0.15], color=MODEL)
                ax.plot([m], [y - 0.15], "s", mfc="white", color=MODEL)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_yticks(ys, [f"{r['arm']} − {r['reference']}" for r in mine])
        ax.set_ylim(-0.6, len(mine) - 0.4)
        ax.set_title(mine[0]["label"], loc="left", fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
    axes[-1].set_xlabel("difference from the reference arm, in each outcome's units")
    axes[-1].legend(
        handles=[
            Line2D([], [], color=BOOT, marker="o", lw=2.5, label="bootstrap 95% (participants)"),
            Line2D([], [], color=MODEL, marker="s", mfc="white", label="mixed model 95%"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.95),
        ncol=2,
        fontsize="small",
    )


BOOT, MODEL = "#1f4e9a", "#b45309"


def _finite(value) -> bool:
    return value is not None and not math.isnan(value)
