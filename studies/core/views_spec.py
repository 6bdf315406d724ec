"""The researcher's download of a study as a file (studies/core/study_spec.py)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse

from studies.core.study_spec import spec_json, study_to_spec
from studies.core.views_researcher import researcher_study


@login_required
def study_spec_download(request: HttpRequest, study_id: int) -> HttpResponse:
    """The study's spec as `study-<id>-spec.json` (another researcher's study: 404)."""
    study = researcher_study(request, study_id)
    response = HttpResponse(
        spec_json(study_to_spec(study)), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-spec.json"'
    return response
