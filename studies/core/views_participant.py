"""Participants' pages: join (participant link, Prolific parameters or public link), consent,
instructions, the annotation page and the completion page. Re-opening the join link resumes:
it leads to the first step not yet done (consent, instructions, the next image, completion)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from studies.core.enrolment import enrol_participant
from studies.core.participant_auth import login_participant, request_participant
from studies.models import Participant, Study


def _study_participant(request: HttpRequest, study: Study) -> Participant | None:
    participant = request_participant(request)
    if participant is not None and participant.study_id == study.pk:
        return participant
    return None


# Crowd platforms' ids (PROLIFIC_PID, STUDY_ID, SESSION_ID) are short printable tokens.
MAX_EXTERNAL_ID = 100


def _external_id(request: HttpRequest, name: str) -> str | None:
    """The query parameter `name`, stripped; None when it is too long or not printable."""
    value = request.GET.get(name, "").strip()
    if len(value) > MAX_EXTERNAL_ID or not value.isprintable():
        return None
    return value


def join(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if study.status != "open":
        return render(request, "participant/closed.html", {"study": study}, status=403)
    for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "t", "token"):
        if _external_id(request, name) is None:
            reason = (
                f"The link's {name} is not valid (at most {MAX_EXTERNAL_ID} printable characters)."
            )
            return render(
                request, "participant/closed.html", {"study": study, "reason": reason}, status=400
            )
    token = request.GET.get("t") or request.GET.get("token")
    pid = request.GET.get("PROLIFIC_PID", "").strip()
    participant = None
    if token:
        participant = Participant.objects.filter(study=study, token=token).first()
        if participant is None:
            return render(
                request,
                "participant/closed.html",
                {"study": study, "reason": "This link is not valid."},
                status=404,
            )
    elif pid:
        participant = Participant.objects.filter(study=study, prolific_pid=pid).first()
        if participant is None:
            participant = enrol_participant(
                study,
                prolific_pid=pid,
                external_study_id=request.GET.get("STUDY_ID", "").strip(),
                external_session_id=request.GET.get("SESSION_ID", "").strip(),
            )
    else:
        participant = _study_participant(request, study)
        if participant is None:
            if not study.allow_public_join:
                return render(
                    request,
                    "participant/closed.html",
                    {"study": study, "reason": "This study needs a personal link."},
                    status=403,
                )
            participant = enrol_participant(study)
    login_participant(request, participant)
    return redirect(next_step(participant))


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
    if participant is None:
        return redirect("join", study_id=study.pk)
    if request.method == "POST":
        if (
            request.POST.get("agree") == "yes"
            and request.POST.get("version") == study.consent_version
        ):
            if not participant.consented:
                participant.consent_version = study.consent_version
                participant.consented_at = timezone.now()
                participant.save(update_fields=["consent_version", "consented_at"])
            return redirect("instructions", study_id=study.pk)
        error = (
            "Please tick the box to agree."
            if request.POST.get("agree") != "yes"
            else "The consent text has changed: please read it again."
        )
        return render(
            request,
            "participant/consent.html",
            {"study": study, "participant": participant, "error": error},
            status=400,
        )
    if participant.consented:
        return redirect(next_step(participant))
    return render(request, "participant/consent.html", {"study": study, "participant": participant})


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
        "n_images": participant.assignments.count(),
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
    return study.kind_spec.participant_page(request, study, participant)


def done(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    participant = _study_participant(request, study)
    if participant is None:
        return redirect("join", study_id=study.pk)
    return render(request, "participant/done.html", {"study": study, "participant": participant})
