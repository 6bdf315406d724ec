"""Who is the participant behind a request: `Authorization: Bearer <token>` or the join session."""

from __future__ import annotations

from django.http import HttpRequest

from studies.models import Participant

SESSION_KEY = "participant_id"


def request_participant(request: HttpRequest) -> Participant | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.startswith("Bearer "):
        token = header[len("Bearer ") :].strip()
        return Participant.objects.select_related("study").filter(token=token).first()
    pid = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    if pid is None:
        return None
    return Participant.objects.select_related("study").filter(pk=pid).first()


def login_participant(request: HttpRequest, participant: Participant) -> None:
    request.session[SESSION_KEY] = participant.pk
