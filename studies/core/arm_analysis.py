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


def comparison_rows(study) -> list[dict]:
    """One row per outcome and non-reference arm: the means, the difference, its bootstrap
    interval and the mixed model's estimate, interval and p-value."""
    kind = kind_of(study)
    names = design.arm_names(study)
    if len(names) < 2:
        return []
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
    from studies.core.views_design import dropout

    return dropout(study)


def context(study) -> dict:
    """The analysis page's comparison section (empty for a study without a design)."""
    if not design.has_design(study):
        return {"arms": None}
    return {
        "arms": {
            "names": design.arm_names(study),
            "method": design.method(study),
            "rows": comparison_rows(study),
            "dropout": dropout_rows(study),
            "interval": interval_name(design.method(study), N_BOOT, study.design["seed"]),
        }
    }


TABLES = {"arm_comparison": comparison_rows, "arm_dropout": dropout_rows}


def draw_comparison(fig, rows: list[dict]) -> None:
    """A forest plot: per outcome, each arm's difference from the reference with the bootstrap
    interval (filled) and the mixed model's interval (open), on the outcome's scale."""
    ax = fig.add_subplot()
    if not rows:
        ax.text(0.5, 0.5, "No comparison yet: no arm has data", ha="center", va="center")
        ax.set_axis_off()
        return
    labels = [f"{r['label']}\n{r['arm']} − {r['reference']}" for r in rows]
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows, strict=True):
        d = r["difference"]
        if d is not None and not math.isnan(d):
            lo, hi = r["ci_low"], r["ci_high"]
            if lo is not None and not math.isnan(lo):
                ax.plot([lo, hi], [y + 0.12, y + 0.12], color="#1f4e9a", lw=2.5)
            ax.plot([d], [y + 0.12], "o", color="#1f4e9a")
        m = r.get("model_estimate")
        if m is not None and not math.isnan(m):
            ax.plot([r["model_ci_low"], r["model_ci_high"]], [y - 0.12, y - 0.12], color="#b45309")
            ax.plot([m], [y - 0.12], "s", mfc="white", color="#b45309")
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.set_yticks(ys, labels)
    ax.set_xlabel("difference from the reference arm (outcome's units)")
    from matplotlib.lines import Line2D

    ax.legend(
        handles=[
            Line2D(
                [], [], color="#1f4e9a", marker="o", lw=2.5, label="bootstrap 95% (participants)"
            ),
            Line2D([], [], color="#b45309", marker="s", mfc="white", label="mixed model 95%"),
        ],
        loc="best",
        fontsize="small",
    )
    ax.set_title("Arms compared")
