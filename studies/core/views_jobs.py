"""A study job's state as JSON, for the pages that show a job's live progress
(static/core/job_watch.js): the same fields whether a worker or the embedded default's
background thread runs it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404

from studies.core.views_researcher import researcher_study


def job_state(job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "label": job.get_status_display(),
        "progress": job.progress,
        "done": job.done,
        "total": job.total,
        "error": job.error,
    }


@login_required
def study_job_state(request: HttpRequest, study_id: int, job_id: int) -> JsonResponse:
    study = researcher_study(request, study_id)
    job = get_object_or_404(study.jobs, pk=job_id)
    return JsonResponse(job_state(job), headers={"Cache-Control": "no-store"})
