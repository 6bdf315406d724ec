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
    """Make this browser's session the participant's, under a new session key.

    The key is renewed every time (as Django's `login` does for researchers): a session id an
    attacker planted in the victim's browser (session fixation) is then no longer the one that
    holds her participant. What the session held before is kept (a researcher testing their own
    link stays signed in)."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = participant.pk
