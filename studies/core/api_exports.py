"""Researchers' export API (docs/design.md "API"): POST /api/v1/studies/<id>/exports {format,
include_practice (tidy only, optional)} -> job;
GET /api/v1/exports/<id> -> {status, progress, download_url, error}; GET .../download -> the zip.

Researchers authenticate with their Django session (CSRF required on POST); a researcher reaches
only studies they own or collaborate on (others answer 404). The export runs as a `batch` task.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from studies.core import storage
from studies.core.api_errors import ApiError
from studies.core.api_input import DEFAULT_MAX_BODY_BYTES, check_body_size
from studies.core.api_schema import (
    ExportJobSerializer,
    ExportListSerializer,
    ExportRequestSerializer,
    errors,
)
from studies.core.dispatch import start_job
from studies.core.exports import FORMATS, ExportParamError, check_format, check_params
from studies.models import Job, Study

RESEARCHER_ERRORS = (400, 401, 403, 404, 409, 413)


def researcher_or_error(request):
    user = request.user
    if user is None or not user.is_authenticated:
        raise ApiError(401, "sign in as a researcher (Django session) to use the export API")
    return user


def visible_study(user, study_id: int) -> Study:
    study = (
        Study.objects.filter(Q(owner=user) | Q(collaborators=user))
        .filter(pk=study_id)
        .distinct()
        .first()
    )
    if study is None:
        raise ApiError(404, f"study {study_id} not found")
    return study


def visible_job(user, job_id: int) -> Job:
    job = (
        Job.objects.filter(Q(study__owner=user) | Q(study__collaborators=user))
        .filter(pk=job_id, kind="export")
        .distinct()
        .first()
    )
    if job is None:
        raise ApiError(404, f"export {job_id} not found")
    return job


def job_answer(request, job: Job) -> dict:
    download = None
    if job.status == "done" and job.file:
        download = request.build_absolute_uri(reverse("api-export-download", args=[job.pk]))
    return {
        "id": job.pk,
        "study": job.study_id,
        "format": job.format,
        "status": job.status,
        "progress": job.progress,
        "download_url": download,
        "error": job.error or None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def start_export(study: Study, fmt: object, user, params: dict | None = None) -> Job:
    """Create an export Job and enqueue it on `batch` once the row is committed; `params` (the
    format's parameters, e.g. include_practice) are checked first: a 400 naming the bad one."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ApiError(400, f"field format must be one of {', '.join(FORMATS)}", field="format")
    try:
        check_format(fmt, study)
    except ValueError as exc:
        raise ApiError(400, f"field format: {exc}", field="format") from None
    try:
        check_params(fmt, params)
    except ExportParamError as exc:
        raise ApiError(400, str(exc), field=exc.name) from None
    return start_job(
        study,
        "export",
        "workers.export_tasks.export_study",
        {"format": fmt, **(params or {})},
        created_by=user,
    )


class ResearcherView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes: list = []

    def initial(self, request, *args, **kwargs):
        check_body_size(request, DEFAULT_MAX_BODY_BYTES)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, ApiError):
            return Response({"error": exc.message, **exc.extra}, status=exc.status)
        return super().handle_exception(exc)


class StudyExportsView(ResearcherView):
    @extend_schema(
        request=ExportRequestSerializer,
        responses={202: ExportJobSerializer, **errors(*RESEARCHER_ERRORS)},
        summary="Start an export of a study",
    )
    def post(self, request, study_id: int):
        user = researcher_or_error(request)
        study = visible_study(user, study_id)
        data = request.data if isinstance(request.data, dict) else {}
        if "format" not in data:
            raise ApiError(
                400, f"field format is required (one of {', '.join(FORMATS)})", field="format"
            )
        params = {name: data[name] for name in data if name != "format"}
        job = start_export(study, data["format"], user, params)
        job.refresh_from_db()  # eager Celery may have finished it already
        return Response(job_answer(request, job), status=202)

    @extend_schema(
        responses={200: ExportListSerializer, **errors(*RESEARCHER_ERRORS)},
        summary="The study's exports, newest first",
    )
    def get(self, request, study_id: int):
        user = researcher_or_error(request)
        study = visible_study(user, study_id)
        return Response(
            {"exports": [job_answer(request, job) for job in study.jobs.filter(kind="export")[:50]]}
        )


class ExportView(ResearcherView):
    @extend_schema(
        responses={200: ExportJobSerializer, **errors(*RESEARCHER_ERRORS)},
        summary="An export job: status, progress, download_url, error",
    )
    def get(self, request, export_id: int):
        user = researcher_or_error(request)
        return Response(job_answer(request, visible_job(user, export_id)))


class ExportDownloadView(ResearcherView):
    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **errors(*RESEARCHER_ERRORS)},
        summary="Download a finished export",
    )
    def get(self, request, export_id: int):
        user = researcher_or_error(request)
        job = visible_job(user, export_id)
        if job.status != "done" or not job.file:
            raise ApiError(409, f"export {export_id} is {job.status}, not done")
        name = f"study{job.study_id}_{job.format}.zip"
        if request.GET.get("presigned") in ("1", "true"):
            # straight from the object store, for five minutes (the access check was above)
            url = storage.presigned_url("media", job.file.name, name)
            if url is None:
                raise ApiError(
                    400,
                    "presigned links exist only with object storage (STORAGE_URL)",
                    field="presigned",
                )
            return HttpResponseRedirect(url)
        return storage.file_response(
            "media", job.file.name, "application/zip", as_attachment=True, filename=name
        )
