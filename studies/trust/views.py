"""Researchers' trust evaluation pages: the list, the "new evaluation" form, the detail page
(live progress, then the summary table and the two plots) and the CSV / plot downloads.

Login required; any signed-in researcher may start evaluations and sees their own (staff see
all; any other id answers 404). The scoring runs on the batch queue (`workers/trust_tasks.py`);
these views never import torch.
"""

from __future__ import annotations

import csv
import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from studies.core import storage
from studies.trust.evaluations import (
    PLOTS,
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    resume_evaluation,
    score_rows,
    start_evaluation,
    summary_rows,
    visible_evaluations,
)
from studies.trust.forms import TrustEvaluationForm

PLOT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def researcher_evaluation(request: HttpRequest, evaluation_id: int):
    return get_object_or_404(visible_evaluations(request.user), pk=evaluation_id)


@login_required
def evaluation_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "trust/evaluation_list.html",
        {"evaluations": visible_evaluations(request.user)[:200]},
    )


@login_required
def evaluation_create(request: HttpRequest) -> HttpResponse:
    form = TrustEvaluationForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            evaluation = start_evaluation(
                form.cleaned_data["model"],
                form.cleaned_data["dataset"],
                request.user,
                form.params(),
            )
            messages.success(request, f"Trust evaluation {evaluation.pk} started.")
            return redirect("trust-detail", evaluation_id=evaluation.pk)
        return render(request, "trust/evaluation_form.html", {"form": form}, status=400)
    return render(request, "trust/evaluation_form.html", {"form": form})


def progress_state(evaluation) -> dict:
    return {
        "id": evaluation.pk,
        "status": evaluation.status,
        "progress": evaluation.progress,
        "done": evaluation.done,
        "total": evaluation.total,
        "error": evaluation.error,
    }


@login_required
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = researcher_evaluation(request, evaluation_id)
    summary = evaluation.summary or {}
    return render(
        request,
        "trust/evaluation_detail.html",
        {
            "evaluation": evaluation,
            "summary": summary,
            "scores": summary.get("scores", []),
            "state": progress_state(evaluation),
            "plots": PLOTS if evaluation.status == "done" and evaluation.folder else (),
        },
    )


@login_required
def evaluation_progress(request: HttpRequest, evaluation_id: int) -> JsonResponse:
    """{"status", "progress", "done", "total", "error"}: the detail page polls this."""
    return JsonResponse(progress_state(researcher_evaluation(request, evaluation_id)))


@login_required
@require_POST
def evaluation_resume(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = researcher_evaluation(request, evaluation_id)
    if resume_evaluation(evaluation):
        messages.success(request, "Evaluation queued again; images already scored are kept.")
    else:
        messages.error(
            request, f"only a failed evaluation can be resumed (this one is {evaluation.status})"
        )
    return redirect("trust-detail", evaluation_id=evaluation.pk)


def _csv_response(filename: str, columns, rows) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
def evaluation_scores_csv(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    """One row per scored image (so far): label, prediction, correct, every score."""
    evaluation = researcher_evaluation(request, evaluation_id)
    return _csv_response(
        f"trust_evaluation_{evaluation.pk}_scores.csv", SCORE_COLUMNS, score_rows(evaluation)
    )


@login_required
def evaluation_summary_csv(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    """One row per score: AUROC, AUPR, direction, definition; accuracy (a finished evaluation)."""
    evaluation = researcher_evaluation(request, evaluation_id)
    if evaluation.status != "done":
        raise Http404(f"evaluation {evaluation.pk} is {evaluation.status}: no summary yet")
    return _csv_response(
        f"trust_evaluation_{evaluation.pk}_summary.csv", SUMMARY_COLUMNS, summary_rows(evaluation)
    )


@login_required
def evaluation_plot(request: HttpRequest, evaluation_id: int, name: str, fmt: str) -> FileResponse:
    """table / scatter as png / svg (`?download=1`: as an attachment)."""
    evaluation = researcher_evaluation(request, evaluation_id)
    if name not in PLOTS or fmt not in PLOT_TYPES:
        raise Http404(f"unknown plot {name}.{fmt}: expected table or scatter, png or svg")
    stored = f"{evaluation.folder}/{name}.{fmt}"
    if not evaluation.folder or not storage.exists("media", stored):
        raise Http404(f"evaluation {evaluation.pk} has no {name}.{fmt} (yet)")
    return storage.file_response(
        "media",
        stored,
        PLOT_TYPES[fmt],
        as_attachment=bool(request.GET.get("download")),
        filename=f"trust_evaluation_{evaluation.pk}_{name}.{fmt}",
    )
