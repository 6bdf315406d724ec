"""Participants' pages: join (participant link, Prolific parameters or public link), consent,
instructions, the annotation page and the completion page. Re-opening the join link resumes:
it leads to the first step not yet done (consent, instructions, the next image, completion).

A visitor without a participant is enrolled when they give consent (a POST), never by a GET
(link previews and crawlers create nothing). A PROLIFIC_PID alone neither enrols into a study
whose public join is off nor resumes a participant: resuming needs this browser's session or
the SESSION_ID that started it."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from studies.core import design
from studies.core.closing import owed_code
from studies.core.enrolment import (
    EnrolmentRefused,
    client_address,
    enrol_public,
    record_consent,
)
from studies.core.participant_auth import login_participant, request_participant
from studies.models import Participant, Study


def _study_participant(request: HttpRequest, study: Study) -> Participant | None:
    participant = request_participant(request)
    if participant is not None and participant.study_id == study.pk:
        return participant
    return None


# Crowd platforms' ids (PROLIFIC_PID, STUDY_ID, SESSION_ID) are short printable tokens.
CROWD_IDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
MAX_EXTERNAL_ID = 100


def _refuse(request: HttpRequest, study: Study, reason: str, status: int) -> HttpResponse:
    return render(
        request, "participant/closed.html", {"study": study, "reason": reason}, status=status
    )


def _crowd_ids(data) -> dict[str, str] | None:
    """PROLIFIC_PID, STUDY_ID, SESSION_ID of a query or form; None when one is not valid."""
    ids = {}
    for name in CROWD_IDS:
        value = data.get(name, "").strip()
        if len(value) > MAX_EXTERNAL_ID or not value.isprintable():
            return None
        ids[name] = value
    return ids


def _crowd_participant(study: Study, ids: dict[str, str]) -> Participant | None | bool:
    """The participant a crowd platform's PROLIFIC_PID started; resuming needs the SESSION_ID
    that started it (a PID alone is someone's public id, not a password)."""
    participant = Participant.objects.filter(study=study, prolific_pid=ids["PROLIFIC_PID"]).first()
    if participant is None:
        return None
    session_id = ids["SESSION_ID"]
    if session_id and participant.external_session_id == session_id:
        return participant
    return False


def join(request: HttpRequest, study_id: int) -> HttpResponse:
    """Open a link. A personal link (`?t=`) or this browser's session resumes; a new visitor is
    led to the consent page, and is enrolled only when consenting (a POST), never on a GET."""
    study = get_object_or_404(Study, pk=study_id)
    if study.status != "open":
        return closed_page(request, study)
    ids = _crowd_ids(request.GET)
    token = request.GET.get("t") or request.GET.get("token") or ""
    if ids is None or len(token) > MAX_EXTERNAL_ID or not token.isprintable():
        reason = (
            f"The link is not valid (its ids are at most {MAX_EXTERNAL_ID} printable characters)."
        )
        return _refuse(request, study, reason, 400)
    if token:
        participant = Participant.objects.filter(study=study, token=token).first()
        if participant is None:
            return _refuse(request, study, "This link is not valid.", 404)
        login_participant(request, participant)
        return redirect(next_step(participant))
    participant = _study_participant(request, study)
    if participant is not None and (
        not ids["PROLIFIC_PID"] or participant.prolific_pid == ids["PROLIFIC_PID"]
    ):
        return redirect(next_step(participant))
    if ids["PROLIFIC_PID"]:
        found = _crowd_participant(study, ids)
        if found is False:
            return _refuse(request, study, ALREADY_STARTED, 403)
        if found is not None:
            login_participant(request, found)
            return redirect(next_step(found))
    if not study.allow_public_join:
        return _refuse(request, study, "This study needs a personal link.", 403)
    query = urlencode({k: v for k, v in ids.items() if v})
    return redirect(reverse("consent", args=[study.pk]) + (f"?{query}" if query else ""))


def closed_page(request: HttpRequest, study: Study) -> HttpResponse:
    """The page of a study that is not open. A participant who opens their link (or comes back
    in the same browser) after it closed sees their completion code if they had finished
    (studies.core.closing.owed_code); nobody is enrolled or resumed."""
    participant = None
    token = request.GET.get("t") or request.GET.get("token") or ""
    if token and len(token) <= MAX_EXTERNAL_ID:
        participant = Participant.objects.filter(study=study, token=token).first()
    if participant is None:
        participant = _study_participant(request, study)
    ids = _crowd_ids(request.GET)
    if participant is None and ids is not None and ids["PROLIFIC_PID"]:
        found = _crowd_participant(study, ids)
        participant = found or None
    context = {
        "study": study,
        "participant": participant,
        "completion_code": owed_code(participant) if participant is not None else None,
    }
    return render(request, "participant/closed.html", context, status=403)


ALREADY_STARTED = (
    "This Prolific ID has already started this study in another browser session. "
    "Please continue in the browser where you started, from the study link your platform gave you."
)


def _enrol_on_consent(request: HttpRequest, study: Study, ids: dict[str, str]):
    """Enrol the visitor who just consented (public join or a new crowd id); a response when
    refused (public join off, id taken, quota reached, too many enrolments from this client)."""
    if not study.allow_public_join:
        return _refuse(request, study, "This study needs a personal link.", 403)
    if ids["PROLIFIC_PID"]:
        found = _crowd_participant(study, ids)
        if found is False:
            return _refuse(request, study, ALREADY_STARTED, 403)
        if found is not None:
            return found
    try:
        return enrol_public(
            study,
            client=client_address(request),
            prolific_pid=ids["PROLIFIC_PID"],
            external_study_id=ids["STUDY_ID"],
            external_session_id=ids["SESSION_ID"],
        )
    except EnrolmentRefused as exc:
        return _refuse(request, study, str(exc), exc.status)


def next_step(participant: Participant) -> str:
    """The page a (re)opened link leads to: consent, instructions, annotation or completion."""
    study_id = participant.study_id
    if not participant.consented:
        return reverse("consent", args=[study_id])
    if participant.completed_at:
        return reverse("done", args=[study_id])
    if not participant.assignments.exclude(status="pending").exists():
        return reverse("instructions", args=[study_id])
    return reverse("annotate", args=[study_id])


@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    participant = _study_participant(request, study)
    ids = _crowd_ids(request.POST if request.method == "POST" else request.GET)
    if participant is None:
        # a new visitor: the consent page, and enrolment only on consenting
        if study.status != "open" or not study.allow_public_join or ids is None:
            return redirect("join", study_id=study.pk)
    context = {"study": study, "participant": participant, "crowd_ids": ids or {}}
    if request.method == "POST":
        if (
            request.POST.get("agree") == "yes"
            and request.POST.get("version") == study.consent_version
        ):
            if participant is None:
                enrolled = _enrol_on_consent(request, study, ids)
                if isinstance(enrolled, HttpResponse):
                    return enrolled
                participant = enrolled
                just_enrolled = True
            else:
                just_enrolled = False
            try:
                participant = record_consent(participant, study.consent_version)
            except EnrolmentRefused as exc:  # every arm at its target
                if just_enrolled:
                    participant.delete()  # enrolled a moment ago; nothing is kept
                return _refuse(request, study, str(exc), exc.status)
            # enrolling or consenting: the session key is renewed (no fixation)
            login_participant(request, participant)
            return redirect("instructions", study_id=study.pk)
        error = (
            "Please tick the box to agree."
            if request.POST.get("agree") != "yes"
            else "The consent text has changed: please read it again."
        )
        return render(request, "participant/consent.html", {**context, "error": error}, status=400)
    if participant is not None and participant.consented:
        return redirect(next_step(participant))
    return render(request, "participant/consent.html", context)


def instructions(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    participant = _study_participant(request, study)
    if participant is None:
        return redirect("join", study_id=study.pk)
    if not participant.consented:
        return redirect("consent", study_id=study.pk)
    context = {
        "study": study,
        "participant": participant,
        "n_images": participant.assignments.real().count(),
        "practice": participant.assignments.filter(practice=True).exists(),
        "howto": study.kind_spec.instructions_template,
        "options": {name: study.option(name) for name in study.kind_spec.options},
    }
    return render(request, "participant/instructions.html", context)


def annotate(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    participant = _study_participant(request, study)
    if participant is None:
        return redirect("join", study_id=study.pk)
    if not participant.consented:
        return redirect("consent", study_id=study.pk)
    if participant.completed_at:
        return redirect("done", study_id=study.pk)
    if study.status != "open":  # closed meanwhile: its page says so (with the code if owed)
        return closed_page(request, study)
    return study.kind_spec.participant_page(
        request, design.for_participant(participant), participant
    )


def done(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    participant = _study_participant(request, study)
    if participant is None:
        return redirect("join", study_id=study.pk)
    return render(request, "participant/done.html", {"study": study, "participant": participant})
