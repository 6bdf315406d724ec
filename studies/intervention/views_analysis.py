"""The intervention study's "Analysis & exports" page (the kind's `analysis_page`): flip rates
by operation and substrate, the area needed to flip (people vs Grad-CAM order), agreement of
people's regions with Grad-CAM and VOICE, per-participant timelines; each plot as SVG / PNG
with the CSV behind it, and the study's exports. Thin: the numbers come from
`studies.intervention.analysis` and `views.study_comparison`; matplotlib only, no torch."""

from __future__ import annotations

import math

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from studies.core import arm_analysis
from studies.core.intervals import INTERVAL_METHOD
from studies.core.plots import HUMAN_COLOUR, csv_response, figure_response, new_figure
from studies.core.time_on_task import TIME_ON_TASK, time_on_task_by_participant
from studies.core.views_arms import arm_plots, arm_slug, requested_arm
from studies.core.views_researcher import export_context
from studies.intervention import analysis
from studies.intervention.views import intervention_study, study_comparison
from studies.models import Assignment

PLOTS = {  # name: (title, the CSV behind it)
    "flip_rates": ("Flip rate by operation and substrate", "flip_rates"),
    "area_to_flip": ("Area needed to flip: people vs Grad-CAM order", "area_to_flip"),
    "agreement": ("Agreement of people's regions with Grad-CAM and VOICE", "agreement"),
    "timelines": ("Per-participant timelines", "timelines"),
}
TABLES = ("flip_rates", "area_to_flip", "agreement", "timelines")
MEASURES = {"gradcam_iou": "Grad-CAM IoU", "voice_overlap": "VOICE overlap"}


def area_rows(comparison: dict) -> list[dict]:
    named = any(
        r["image"].original_name for r in comparison["rows"]
    )  # else the CSV keeps its bytes
    return [
        {
            "image_index": r["image"].index,
            **({"image_name": r["image"].original_name} if named else {}),
            "class_name": r["image"].class_name,
            "trials": r["trials"],
            "model_flip_gradcam_order": r["model_flip"],
            "human_flip_min": r["human_flip_min"],
            "human_flip_median": r["human_flip_median"],
        }
        for r in comparison["rows"]
    ]


def study_tables(study, arm: str | None = None) -> dict[str, list[dict]]:
    trials = analysis.load_trials(study, arm)
    return {
        "flip_rates": analysis.flip_rates(trials),
        "area_to_flip": area_rows(study_comparison(study, arm)),
        "agreement": analysis.agreement(trials),
        "timelines": analysis.timelines(trials),
    }


def participant_rows(study, timelines: list[dict]) -> list[dict]:
    """Per participant: trials, flips, images finished, time on task; or the reason for none."""
    by_code: dict[str, list[dict]] = {}
    for row in timelines:
        by_code.setdefault(row["participant"], []).append(row)
    out = []
    real = Prefetch("assignments", queryset=Assignment.objects.real())  # practice: not data
    seconds = time_on_task_by_participant(study)
    for p in study.participants.order_by("number").prefetch_related(real):
        mine = by_code.get(p.code, [])
        finished = sum(a.status == "finished" for a in p.assignments.all())
        row = {"participant": p, "assigned": len(p.assignments.all()), "finished": finished}
        if p.excluded:
            row["reason"] = f"excluded{': ' + p.excluded_reason if p.excluded_reason else ''}"
        elif not mine:
            row["reason"] = "not started: no trial yet"
        else:
            row.update(
                reason="",
                trials=len(mine),
                flips=sum(r["flipped"] for r in mine),
                time_on_task_s=seconds.get(p.pk, 0.0),
            )
        out.append(row)
    return out


def analysis_page(request: HttpRequest, study) -> HttpResponse:
    tables = study_tables(study)
    comparison = study_comparison(study)
    participants = participant_rows(study, tables["timelines"])
    plots = [(name, title, table) for name, (title, table) in PLOTS.items()]
    return render(
        request,
        "intervention/analysis.html",
        {
            "study": study,
            "tables": TABLES,
            "flip_rates": tables["flip_rates"],
            "agreement": tables["agreement"],
            "comparison": comparison,
            "participants": participants,
            "left_out": [p for p in participants if p["reason"]],
            "plots": plots,
            **arm_analysis.context(study),
            **arm_plots(study, plots),
            "interval_method": INTERVAL_METHOD,
            "time_on_task": TIME_ON_TASK,
            **export_context(study),
        },
    )


@login_required
def analysis_csv(request: HttpRequest, study_id: int, table: str) -> HttpResponse:
    study = intervention_study(request, study_id)
    if table not in TABLES:
        raise Http404(f"no table {table}")
    arm = requested_arm(request, study)
    suffix = f"_{arm_slug(arm)}" if arm else ""
    return csv_response(study_tables(study, arm)[table], f"study{study.pk}_{table}{suffix}")


def _ci_errors(rows, key):
    return [
        [0 if math.isnan(r["ci_low"]) else r[key] - r["ci_low"] for r in rows],
        [0 if math.isnan(r["ci_high"]) else r["ci_high"] - r[key] for r in rows],
    ]


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes)


def draw_plot(name: str, tables: dict):
    fig = new_figure()
    ax = fig.add_subplot()
    title = PLOTS[name][0]
    if name == "flip_rates":
        rows = tables["flip_rates"]
        if rows:
            labels = [f"{r['operation']}\n{r['substrate']}" for r in rows]
            ax.bar(labels, [r["flip_rate"] for r in rows], yerr=_ci_errors(rows, "flip_rate"),
                   capsize=3, color="tab:purple")  # fmt: skip
        else:
            _empty(ax, "no trial yet")
        ax.set(ylabel="flip rate (95% bootstrap CI)", ylim=(0, 1.05), title=title)
    elif name == "area_to_flip":
        rows = [
            r
            for r in tables["area_to_flip"]
            if r["model_flip_gradcam_order"] is not None and r["human_flip_min"] is not None
        ]
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":")
        if rows:
            ax.scatter([r["model_flip_gradcam_order"] for r in rows],
                       [r["human_flip_min"] for r in rows], color=HUMAN_COLOUR, zorder=3)  # fmt: skip
        else:
            _empty(ax, "no image has both a flipping human\ndeletion and a Grad-CAM flip yet")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="smallest flipping deletion, Grad-CAM order",
               ylabel="smallest flipping deletion, people", title="Area needed to flip")  # fmt: skip
    elif name == "agreement":
        rows = [r for r in tables["agreement"] if r["operation"] != "all"]
        if rows:
            labels = [f"{MEASURES.get(r['measure'], r['measure'])}\n{r['operation']}" for r in rows]
            colours = ["tab:blue" if r["measure"] == "gradcam_iou" else "tab:orange" for r in rows]
            ax.bar(labels, [r["mean"] for r in rows], yerr=_ci_errors(rows, "mean"), capsize=3,
                   color=colours)  # fmt: skip
        else:
            _empty(ax, "no trial with a Grad-CAM or VOICE map yet")
        ax.set(ylabel="mean (95% bootstrap CI)", ylim=(0, 1.05), title="Agreement with the model")
    elif name == "timelines":
        rows = tables["timelines"]
        codes = sorted({r["participant"] for r in rows})
        for y, code in enumerate(codes):
            mine = [r for r in rows if r["participant"] == code]
            ax.plot([r["since_start_s"] for r in mine], [y] * len(mine), color="#bbb", lw=1)
            for flipped, colour in ((False, "tab:gray"), (True, "tab:red")):
                pts = [r for r in mine if r["flipped"] == flipped]
                ax.scatter([r["since_start_s"] for r in pts], [y] * len(pts), s=18, c=colour,
                           label=("flipped" if flipped else "no flip") if y == 0 else None)  # fmt: skip
        if codes:
            ax.set_yticks(range(len(codes)), codes)
            ax.legend(loc="lower right")
        else:
            _empty(ax, "no trial yet")
        ax.set(xlabel="seconds since the participant's first trial", title=title)
    else:
        raise Http404(f"no plot {name}")
    return fig


@login_required
def analysis_plot(request: HttpRequest, study_id: int, name: str, fmt: str) -> HttpResponse:
    study = intervention_study(request, study_id)
    if name not in PLOTS:
        raise Http404(f"no plot {name}")
    arm = requested_arm(request, study)
    fig = draw_plot(name, study_tables(study, arm))
    if arm:  # one arm's figure: its title says which
        for ax in fig.axes:
            ax.set_title(f"{ax.get_title()} · {arm}")
    suffix = f"_{arm_slug(arm)}" if arm else ""
    return figure_response(fig, fmt, f"study{study.pk}_{name}{suffix}")
