"""The analysis page's "What predicts a good prompt" section: start the regression Job, its
plot (permutation importances, R^2 in the legend) and CSV, from the cached result of the
study's current data (studies/prompting/regression.py). No science here: the Job computes."""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from studies.core.plots import csv_response, figure_response, new_figure
from studies.core.views_researcher import researcher_study
from studies.prompting import regression

MODEL_LABELS = {"linear": "linear (ridge)", "forest": "random forest"}


def regression_context(study) -> dict:
    """What the section shows: the current data's job (done: its R^2 table), older results."""
    job = regression.current_job(study)
    report = job.report if job is not None and job.status == "done" else None
    r2 = []
    if report:
        by_model: dict[str, dict] = {}
        for row in report["r2"]:
            by_model.setdefault(row["dataset"], {"dataset": row["dataset"], "n": row["n"]})
            by_model[row["dataset"]][row["model"]] = row["r2"]
        r2 = list(by_model.values())
    stale = None
    if job is None:
        stale = study.jobs.filter(kind=regression.KIND, status="done").order_by("-pk").first()
    return {
        "regression_job": job,
        "regression_report": report,
        "regression_r2": r2,
        "regression_stale": stale,
        "regression_top": {m: regression.top_importances(report, m, 5) for m in regression_models()}
        if report
        else {},
    }


def regression_models() -> tuple[str, ...]:
    from interventions.pointprompt.regression import MODELS

    return MODELS


def _report(request: HttpRequest, study_id: int):
    study = researcher_study(request, study_id)
    job = regression.current_job(study)
    if job is None or job.status != "done":
        raise Http404("no regression result for the study's current data: run it first")
    return study, job.report


@login_required
@require_POST
def regression_start(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    job, started = regression.start_regression(study, request.user)
    if started:
        messages.info(request, f"regression job {job.pk} started")
    else:
        messages.info(request, f"regression job {job.pk} already covers the current data")
    return redirect(reverse("study-analysis", args=[study.pk]) + "#regression")


def draw_regression(report: dict, n: int = 12):
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    models = regression_models()
    overall = {r["model"]: r["r2"] for r in report["r2"] if r["dataset"] == "all"}
    top = regression.top_importances(report, "forest", n) or regression.top_importances(
        report, "linear", n
    )
    features = [r["feature"] for r in top][::-1]
    height = 0.8 / len(models)
    for k, model in enumerate(models):
        rows = {r["feature"]: r for r in report["importances"] if r["model"] == model}
        values = [rows[f]["importance"] for f in features]
        errors = [0 if math.isnan(rows[f]["std"]) else rows[f]["std"] for f in features]
        r2 = overall.get(model, math.nan)
        label = f"{MODEL_LABELS[model]}: R² {r2:.2f}" if not math.isnan(r2) else MODEL_LABELS[model]
        ys = [i + (k - (len(models) - 1) / 2) * height for i in range(len(features))]
        ax.barh(ys, values, height=height, xerr=errors, capsize=2, label=label)
    ax.set_yticks(range(len(features)), features, fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set(xlabel="permutation importance (drop in R²)", title="What predicts a good prompt")
    ax.legend(fontsize=7, loc="lower right")
    return fig


@login_required
def regression_plot(request: HttpRequest, study_id: int, fmt: str = "svg") -> HttpResponse:
    study, report = _report(request, study_id)
    return figure_response(draw_regression(report), fmt, f"study{study.pk}_prompt_regression")


@login_required
def regression_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    study, report = _report(request, study_id)
    return csv_response(regression.result_rows(report), f"study{study.pk}_prompt_regression")
