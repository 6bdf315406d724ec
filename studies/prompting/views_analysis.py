"""Researchers' analysis pages (docs/design.md "Overprompting analysis"): tables, server-side PNG
plots (matplotlib, Agg) and CSV downloads, plus starting exports and baselines from the page.
Thin: the figures come from `studies.prompting.analysis`; no torch here (jobs go to the batch queue)."""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from interventions.pointprompt.released_names import (
    RELEASED_STRATEGIES,
    UNAVAILABLE,
    released_counts,
)
from interventions.prompt_strategies import STRATEGIES as FAMILY_STRATEGIES
from studies.core import arm_analysis
from studies.core.image_names import image_names
from studies.core.plots import (
    AUTOMATED_COLOUR,
    HUMAN_COLOUR,
    csv_response,
    figure_response,
    integer_axis,
    new_figure,
)
from studies.core.views_arms import arm_plots, arm_slug, requested_arm
from studies.core.views_researcher import export_context, researcher_study
from studies.prompting import analysis, analysis_store, comparison
from studies.prompting.analysis import with_name
from studies.prompting.baselines import baseline_rows, start_baselines

TABLES = (
    "assignments",
    "participants",
    "datasets",
    "study",
    "iou_by_points",
    "iou_by_timestep",
    "baselines",
    "human_vs_baselines",
    "human_vs_automated",
)
PLOTS = (
    "iou_by_points",
    "iou_by_timestep",
    "best_vs_final",
    "overprompted_share",
    "human_vs_baselines",
    "human_vs_automated",
)
# Shown in their own card (prompting/_human_vs_automated.html), not the plot grid; the
# overall-only "human_vs_baselines" bar chart it replaced is still served for old links.
OWN_CARD_PLOTS = ("human_vs_baselines", "human_vs_automated")


PLOT_TABLES = {  # the CSV behind each plot
    "iou_by_points": "iou_by_points",
    "iou_by_timestep": "iou_by_timestep",
    "best_vs_final": "assignments",
    "overprompted_share": "participants",
    "human_vs_baselines": "human_vs_baselines",
    "human_vs_automated": "human_vs_automated",
}
PLOT_TITLES = {
    "iou_by_points": "IoU vs number of points",
    "iou_by_timestep": "IoU vs timestep",
    "best_vs_final": "Best vs final IoU per image",
    "overprompted_share": "Share overprompted",
    "human_vs_baselines": "Human vs automated prompts",
    "human_vs_automated": "Humans against automated prompts",
}


def study_tables(study, arm: str | None = None) -> dict[str, list[dict]]:
    """Every table of the page. Participants marked excluded are left out (load_logs), and
    participants with no timestep yet are left out of the statistics (they have no score).
    `arm`: that design arm's assignments only (its baselines: the study's)."""
    logs = analysis.load_logs(study, arm)
    figures = [analysis.assignment_figures(log) for log in logs]
    started = {f.participant for f in figures if f.T > 0}
    counted = [f for f in figures if f.participant in started]
    groups = analysis.summaries(counted)
    baselines = baseline_rows(study)
    names = image_names(study.dataset)  # the researcher's file names, when the data set has them
    assignments = [f.as_row() for f in figures]
    if names:
        assignments = [with_name(row, names) for row in assignments]
    return {
        "assignments": assignments,
        "participants": groups["participant"],
        "datasets": groups["dataset"],
        "study": groups["study"],
        "iou_by_points": analysis.iou_curve(logs, "points"),
        "iou_by_timestep": analysis.iou_curve(logs, "timestep"),
        "baselines": baselines,
        "human_vs_baselines": analysis.baseline_comparison(counted, baselines),
        "human_vs_automated": comparison.comparison_rows(counted, baselines, study.dataset.name),
    }


def participant_rows(study, summaries: list[dict]) -> list[dict]:
    """One row per participant: their figures, or no figures and the reason."""
    by_code = {row["group"]: row for row in summaries}
    rows = []
    for p in study.participants.order_by("number"):
        row = by_code.get(p.code)
        if p.excluded:
            reason = f"excluded{': ' + p.excluded_reason if p.excluded_reason else ''}"
            rows.append({"group": p.code, "reason": reason})
        elif row is None:
            rows.append({"group": p.code, "reason": "not started: no timestep yet"})
        else:
            rows.append({**row, "reason": ""})
    return rows


EMPTY_TABLES = {"study": [], "participants": [], "datasets": [], "human_vs_automated": []}


def analysis_page(request: HttpRequest, study) -> HttpResponse:
    """The prompting study's analysis page (the kind's `analysis_page`), read from the stored
    analysis (studies/prompting/analysis_store.py), which it brings up to date when stale."""
    state = analysis_store.ensure(study, request.user)
    result = state["result"]
    tables = analysis_store.tables_of(result) if result is not None else EMPTY_TABLES
    stored_rows = analysis_store.comparison_of(result) if result is not None else []
    participants = participant_rows(study, tables["participants"])
    plots = [(p, PLOT_TITLES[p], PLOT_TABLES[p]) for p in PLOTS if p not in OWN_CARD_PLOTS]
    return render(
        request,
        "prompting/analysis.html",
        {
            "study": study,
            "analysis_state": state,
            "summary": tables["study"][0] if tables["study"] else None,
            "participants": participants,
            "left_out": [r for r in participants if r["reason"]],
            "datasets": tables["datasets"],
            "human_vs_automated": comparison.display_groups(tables["human_vs_automated"]),
            "interval_method": analysis.INTERVAL_METHOD,
            "tables": TABLES,
            "plots": plots,
            **arm_analysis.context(study, stored_rows),
            **arm_plots(study, plots),
            "baseline_jobs": study.jobs.filter(kind="baseline")[:5],
            "released_strategies": RELEASED_STRATEGIES,
            "family_strategies": FAMILY_STRATEGIES,
            "unavailable_strategies": sorted(UNAVAILABLE.items()),
            "released_counts": released_counts(study.dataset.name),
            **export_context(study),
        },
    )


@login_required
def analysis_csv(request: HttpRequest, study_id: int, table: str) -> HttpResponse:
    study = researcher_study(request, study_id)
    if table not in TABLES:
        raise Http404(f"no table {table}")
    arm = requested_arm(request, study)
    suffix = f"_{arm_slug(arm)}" if arm else ""
    tables, computed_at = analysis_store.read(study, arm, assignments=table == "assignments")
    response = csv_response(tables[table], f"study{study.pk}_{table}{suffix}")
    response["X-Analysis-Computed-At"] = computed_at.isoformat()  # the stored result it read
    return response


def _errorbars(ax, rows, x_key, label):
    rows = [r for r in rows if not math.isnan(r["mean_iou"])]
    xs = [r[x_key] for r in rows]
    means = [r["mean_iou"] for r in rows]
    low = [0 if math.isnan(r["ci_low"]) else r["mean_iou"] - r["ci_low"] for r in rows]
    high = [0 if math.isnan(r["ci_high"]) else r["ci_high"] - r["mean_iou"] for r in rows]
    ax.errorbar(xs, means, yerr=[low, high], fmt="o-", capsize=3, label=label, color=HUMAN_COLOUR)


def draw_plot(name: str, tables: dict):
    if name == "human_vs_automated":
        fig = new_figure(8.0, 3.8)
        comparison.draw_comparison(fig, tables["human_vs_automated"], PLOT_TITLES[name])
        return fig
    fig = new_figure()
    ax = fig.add_subplot()
    ci = "mean IoU (95% bootstrap CI)"
    if name == "iou_by_points":
        _errorbars(ax, tables["iou_by_points"], "points", ci)
        ax.set(xlabel="number of points", ylabel="IoU", title=PLOT_TITLES[name], ylim=(0, 1.05))
        integer_axis(ax.xaxis)
    elif name == "iou_by_timestep":
        _errorbars(ax, tables["iou_by_timestep"], "timestep", ci)
        ax.set(xlabel="timestep", ylabel="IoU", title=PLOT_TITLES[name], ylim=(0, 1.05))
        integer_axis(ax.xaxis)
    elif name == "best_vs_final":
        for reason, colour in (
            ("finished", "tab:blue"),
            ("stagnation", "tab:orange"),
            ("", "tab:gray"),
        ):
            rows = [r for r in tables["assignments"] if r["T"] and r["stop_reason"] == reason]
            ax.scatter([r["best"] for r in rows], [r["final"] for r in rows], s=14, c=colour,
                       label={"finished": "annotator ended", "stagnation": "stagnation", "": "not ended"}[reason])  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(
            xlabel="best IoU",
            ylabel="final IoU",
            title=PLOT_TITLES[name],
            xlim=(0, 1.02),
            ylim=(0, 1.02),
        )
        ax.legend(loc="upper left")
    elif name == "overprompted_share":
        # participants, then data sets, told apart by colour (a legend), not by a prefix
        groups = (
            ("participant", tables["participants"], HUMAN_COLOUR),
            ("data set", tables["datasets"], "tab:gray"),
        )
        position, ticks, labels = 0, [], []
        for label, rows, colour in groups:
            rows = [r for r in rows if not math.isnan(r["share_overprompted"])]
            if not rows:
                continue
            xs = list(range(position, position + len(rows)))
            ax.bar(xs, [r["share_overprompted"] for r in rows], color=colour, label=label)
            ticks += xs
            labels += [str(r["group"]) for r in rows]
            position += len(rows) + 1  # a gap between the groups
        ax.set_xticks(ticks, labels, rotation=30, ha="right")
        if ticks:
            ax.legend(loc="upper right")
        ax.set(ylabel="share overprompted", title="Overprompted (annotator-ended)", ylim=(0, 1))
    elif name == "human_vs_baselines":
        rows = [r for r in tables["human_vs_baselines"] if not math.isnan(r["mean_iou"])]
        means = [r["mean_iou"] for r in rows]
        errs = [
            [0 if math.isnan(r["ci_low"]) else r["mean_iou"] - r["ci_low"] for r in rows],
            [0 if math.isnan(r["ci_high"]) else r["ci_high"] - r["mean_iou"] for r in rows],
        ]
        human = [r["method"].startswith("human") for r in rows]
        colours = [HUMAN_COLOUR if h else AUTOMATED_COLOUR for h in human]
        ax.bar(range(len(rows)), means, yerr=errs, capsize=3, color=colours)
        ax.set_xticks(range(len(rows)), [r["method"] for r in rows], rotation=30, ha="right")
        from matplotlib.patches import Patch

        sources = (("people", HUMAN_COLOUR, True), ("automated prompts", AUTOMATED_COLOUR, False))
        handles = [Patch(color=c, label=label) for label, c, h in sources if h in human]
        if handles:
            ax.legend(handles=handles, loc="lower right")
        ax.set(ylabel=ci, title=PLOT_TITLES[name], ylim=(0, 1.05))
    else:
        raise Http404(f"no plot {name}")
    return fig


@login_required
def analysis_plot(request: HttpRequest, study_id: int, name: str, fmt: str = "png"):
    study = researcher_study(request, study_id)
    if name not in PLOTS:
        raise Http404(f"no plot {name}")
    arm = requested_arm(request, study)
    tables, computed_at = analysis_store.read(study, arm, assignments=name == "best_vs_final")
    fig = draw_plot(name, tables)
    if arm:  # one arm's figure: its title says which
        for ax in fig.axes:
            ax.set_title(f"{ax.get_title()} · {arm}")
    suffix = f"_{arm_slug(arm)}" if arm else ""
    response = figure_response(fig, fmt, f"study{study.pk}_{name}{suffix}")
    response["X-Analysis-Computed-At"] = computed_at.isoformat()
    return response


def _small_int(raw, label: str) -> int:
    raw = (raw or "").strip()
    if not (raw.isdigit() and len(raw) <= 4):
        raise ValueError(f"the {label} must be a whole number from 0 to 9999, got {raw[:40]!r}")
    return int(raw)


@login_required
@require_POST
def baselines_start(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    strategies = request.POST.getlist("strategy")
    try:
        raw = (request.POST.get("seed") or "0").strip()
        seed = int(raw) if raw.isdigit() and len(raw) <= 10 else -1
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer from 0 to {2**32 - 1}, got {raw[:40]!r}")
        counts = request.POST.get("counts") or "auto"
        fixed = None
        if counts == "fixed":
            fixed = tuple(
                _small_int(request.POST.get(name), label)
                for name, label in (("green", "green count"), ("red", "red count"))
            )
        elif counts not in ("auto", "one_point"):
            raise ValueError(f"counts must be auto, one_point or fixed, got {counts[:40]!r}")
        job = start_baselines(study, strategies, seed, fixed, counts == "one_point")
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"baseline job {job.pk} started")
    return redirect("study-analysis", study.pk)
