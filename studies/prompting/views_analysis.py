"""Researchers' analysis pages (docs/design.md "Overprompting analysis"): tables, server-side PNG
plots (matplotlib, Agg) and CSV downloads, plus starting exports and baselines from the page.
Thin: the figures come from `studies.prompting.analysis`; no torch here (jobs go to the batch queue)."""

from __future__ import annotations

import csv
import io
import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from studies.core.api_errors import ApiError
from studies.core.api_exports import start_export
from studies.core.views_researcher import researcher_study
from studies.prompting import analysis
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
)
PLOTS = (
    "iou_by_points",
    "iou_by_timestep",
    "best_vs_final",
    "overprompted_share",
    "human_vs_baselines",
)


def study_tables(study) -> dict[str, list[dict]]:
    logs = analysis.load_logs(study)
    figures = [analysis.assignment_figures(log) for log in logs]
    groups = analysis.summaries(figures)
    baselines = baseline_rows(study)
    return {
        "assignments": [f.as_row() for f in figures],
        "participants": groups["participant"],
        "datasets": groups["dataset"],
        "study": groups["study"],
        "iou_by_points": analysis.iou_curve(logs, "points"),
        "iou_by_timestep": analysis.iou_curve(logs, "timestep"),
        "baselines": baselines,
        "human_vs_baselines": analysis.baseline_comparison(figures, baselines),
    }


@login_required
def analysis_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    tables = study_tables(study)
    return render(
        request,
        "prompting/analysis.html",
        {
            "study": study,
            "summary": tables["study"][0] if tables["study"] else None,
            "participants": tables["participants"],
            "datasets": tables["datasets"],
            "comparison": tables["human_vs_baselines"],
            "tables": TABLES,
            "plots": PLOTS,
            "exports": study.jobs.filter(kind="export")[:10],
            "baseline_jobs": study.jobs.filter(kind="baseline")[:5],
            "strategies": ("random", "kmedoids", "shi_tomasi", "entropy", "max_distance"),
        },
    )


@login_required
def analysis_csv(request: HttpRequest, study_id: int, table: str) -> HttpResponse:
    study = researcher_study(request, study_id)
    if table not in TABLES:
        raise Http404(f"no table {table}")
    rows = study_tables(study)[table]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            )
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="study{study.pk}_{table}.csv"'
    return response


def _errorbars(ax, rows, x_key, label):
    xs = [r[x_key] for r in rows]
    means = [r["mean_iou"] for r in rows]
    low = [0 if math.isnan(r["ci_low"]) else r["mean_iou"] - r["ci_low"] for r in rows]
    high = [0 if math.isnan(r["ci_high"]) else r["ci_high"] - r["mean_iou"] for r in rows]
    ax.errorbar(xs, means, yerr=[low, high], fmt="o-", capsize=3, label=label)


def render_plot(name: str, tables: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6), dpi=100)
    ax = fig.add_subplot()
    if name == "iou_by_points":
        _errorbars(ax, tables["iou_by_points"], "points", "mean IoU (95% CI)")
        ax.set(
            xlabel="number of points", ylabel="IoU", title="IoU vs number of points", ylim=(0, 1.05)
        )
    elif name == "iou_by_timestep":
        _errorbars(ax, tables["iou_by_timestep"], "timestep", "mean IoU (95% CI)")
        ax.set(xlabel="timestep", ylabel="IoU", title="IoU vs timestep", ylim=(0, 1.05))
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
            title="Best vs final per image",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
        )
    elif name == "overprompted_share":
        rows = [(f"P {r['group']}", r["share_overprompted"]) for r in tables["participants"]]
        rows += [(f"D {r['group']}", r["share_overprompted"]) for r in tables["datasets"]]
        ax.bar([k for k, _ in rows], [0 if math.isnan(v) else v for _, v in rows], color="tab:red")
        ax.set(
            ylabel="share overprompted", title="Overprompted (annotator-ended images)", ylim=(0, 1)
        )
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    elif name == "human_vs_baselines":
        rows = tables["human_vs_baselines"]
        means = [0 if math.isnan(r["mean_iou"]) else r["mean_iou"] for r in rows]
        errs = [0 if math.isnan(r["ci_high"]) else r["ci_high"] - r["mean_iou"] for r in rows]
        ax.bar([r["method"] for r in rows], means, yerr=errs, capsize=3, color="tab:green")
        ax.set(ylabel="mean IoU (95% CI)", title="Human vs automated prompts", ylim=(0, 1.05))
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    else:
        raise Http404(f"no plot {name}")
    if name in ("best_vs_final",):
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@login_required
def analysis_plot(request: HttpRequest, study_id: int, name: str) -> HttpResponse:
    study = researcher_study(request, study_id)
    if name not in PLOTS:
        raise Http404(f"no plot {name}")
    return HttpResponse(render_plot(name, study_tables(study)), content_type="image/png")


@login_required
@require_POST
def export_start(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    try:
        job = start_export(study, request.POST.get("format"), request.user)
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"export {job.pk} ({job.format}) started")
    return redirect("study-analysis", study.pk)


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
        job = start_baselines(study, strategies, seed)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"baseline job {job.pk} started")
    return redirect("study-analysis", study.pk)
