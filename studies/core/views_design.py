"""The researcher's side of a design (docs/experiments.md): the arms on the study page with
their sizes and dropout, the randomisation log, previewing an arm as a participant, and
marking the first participants as a pilot."""

from __future__ import annotations

import csv
import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from studies.core import design
from studies.core.design_summary import design_context
from studies.core.participant_auth import login_participant
from studies.core.views_researcher import researcher_study
from studies.models import Allocation, Participant, Study

PILOT = "pilot"
LOG_PAGE = 100


@login_required
def allocation_log(request: HttpRequest, study_id: int) -> HttpResponse:
    """The randomisation log: each allocated participant in consent order (participant, arm,
    block, slot, time); `?format=csv` for all of it."""
    study = researcher_study(request, study_id)
    rows = Allocation.objects.filter(study=study).select_related("participant").order_by("sequence")
    if request.GET.get("format") == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["sequence", "participant", "arm", "block", "slot", "arm_order", "at"])
        for a in rows.iterator(chunk_size=2000):
            writer.writerow(
                [
                    a.sequence,
                    a.participant.code,
                    a.arm,
                    a.block,
                    a.slot,
                    " > ".join(a.arm_order),
                    a.created_at.isoformat(),
                ]
            )
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-allocation.csv"'
        return response
    page = Paginator(rows, LOG_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "researcher/allocation_log.html",
        {"study": study, "page": page, "notes": design.METHOD_NOTES, **design_context(study)},
    )


def make_preview(study: Study, arm_name: str | None, user) -> Participant:
    """A throwaway open copy of the study as `arm_name` runs it (its protocol and model), with
    one consented participant: nothing is written to the study itself. The user's earlier
    previews of this study are deleted."""
    view = design.study_view(study, arm_name) if arm_name else study
    with transaction.atomic():
        Study.objects.filter(preview_of=study, owner=user).delete()
        preview = Study.objects.create(
            kind=study.kind,
            title=f"Preview of {study.title}" + (f" ({arm_name})" if arm_name else ""),
            instructions=study.instructions,
            consent_text=study.consent_text,
            consent_version=study.consent_version,
            survey_question=study.survey_question,
            dataset=study.dataset,
            model=view.model,
            protocol=design.arm_protocol(study, design.arm_by_name(study, arm_name))
            if arm_name
            else dict(study.protocol),
            status="open",
            owner=user,
            annotators_per_image=study.annotators_per_image,
            images_per_participant=study.images_per_participant,
            assignment_seed=study.assignment_seed,
            allow_public_join=False,
            max_participants=1,
            attention_images=study.attention_images,
            attention_threshold=study.attention_threshold,
            opened_at=timezone.now(),
            preview_of=study,
        )
        from studies.core.enrolment import enrol_participant

        participant = enrol_participant(preview)
        participant.consent_version = preview.consent_version
        participant.consented_at = timezone.now()
        participant.save(update_fields=["consent_version", "consented_at"])
        design.run_on_open(preview)
    return participant


@login_required
@require_POST
def preview(request: HttpRequest, study_id: int) -> HttpResponse:
    """Open the study (or one arm of it) as a participant would, in a preview copy."""
    study = researcher_study(request, study_id)
    if study.is_imported:
        messages.error(request, "Imported results have no participant pages to preview.")
        return redirect("study-detail", study_id=study.pk)
    arm = request.POST.get("arm") or None
    if arm is not None and design.arm_by_name(study, arm) is None:
        messages.error(request, f"This study has no arm named {arm!r}.")
        return redirect("study-detail", study_id=study.pk)
    participant = make_preview(study, arm, request.user)
    login_participant(request, participant)
    return redirect("instructions", study_id=participant.study_id)


@login_required
@require_POST
def mark_pilot(request: HttpRequest, study_id: int) -> HttpResponse:
    """Participants 1..N are a pilot: left out of every analysis (excluded, reason "pilot"),
    kept and flagged in exports. N = 0 takes the pilot mark off again."""
    study = researcher_study(request, study_id)
    raw = (request.POST.get("through") or "").strip()
    if not raw.isdigit() or int(raw) > 100_000:
        messages.error(request, f"pilot: give the last pilot participant's number (got {raw!r})")
        return redirect("study-detail", study_id=study.pk)
    n = int(raw)
    with transaction.atomic():
        study.participants.filter(excluded=True, excluded_reason=PILOT).update(
            excluded=False, excluded_reason=""
        )
        marked = (
            study.participants.filter(number__lte=n, excluded=False).update(
                excluded=True, excluded_reason=PILOT
            )
            if n
            else 0
        )
    if n:
        messages.success(
            request,
            f"Participants 1 to {n} are the pilot: {marked} left out of the analysis "
            "(participants excluded for another reason stay as they were).",
        )
    else:
        messages.success(request, "No pilot: the pilot participants are included again.")
    return redirect("study-detail", study_id=study.pk)
