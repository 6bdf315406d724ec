"""Researchers' pages: study list, create/edit, open/close, participant links, live progress,
and the progress of the job that runs when a study opens. Kind-specific pages (replay,
analysis) live in the kind's package.

Login required everywhere; a researcher reaches only studies they own or collaborate on (any
other study id answers 404, so ids do not leak). Views stay thin: the batch work (embeddings)
is enqueued on Celery, never run with torch in the web process.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from studies.core import design
from studies.core.api_errors import ApiError
from studies.core.api_exports import start_export
from studies.core.closing import close_study
from studies.core.design_form import ADD_ARM
from studies.core.design_summary import design_context
from studies.core.enrolment import enrol_participant
from studies.core.exports import FORMAT_LABELS, FORMATS, study_formats
from studies.core.forms import GenerateLinksForm, StudyForm
from studies.core.kinds import readable_protocol
from studies.core.quality import attention_status
from studies.core.time_on_task import TIME_ON_TASK, assignment_seconds, first_and_last
from studies.models import Assignment, Study

IMPORTED_READ_ONLY = (
    "This study holds imported human results: it is read-only, it cannot be opened and no "
    "participant can join it."
)


def visible_studies(user):
    """Studies the user owns or collaborates on."""
    # an arm's preview copy (studies/core/views_design.py) is no study of theirs to list
    return (
        Study.objects.filter(Q(owner=user) | Q(collaborators=user))
        .filter(preview_of=None)
        .distinct()
    )


def researcher_study(request: HttpRequest, study_id: int) -> Study:
    """The study if the signed-in researcher may see it, else 404."""
    return get_object_or_404(
        visible_studies(request.user).select_related("dataset", "model", "owner"), pk=study_id
    )


def join_url(request: HttpRequest, study: Study, token: str | None = None) -> str:
    url = request.build_absolute_uri(reverse("join", args=[study.pk]))
    return f"{url}?t={token}" if token else url


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    studies = (
        visible_studies(request.user)
        .select_related("dataset", "model", "owner")
        .annotate(n_participants=Count("participants", distinct=True))
        .order_by("-created_at")
    )
    return render(request, "researcher/study_list.html", {"studies": studies})


@login_required
def study_create(request: HttpRequest) -> HttpResponse:
    initial = {}
    if request.GET.get("dataset", "").isdigit():  # "new study from this data set"
        initial["dataset"] = int(request.GET["dataset"])
    form = StudyForm(
        request.POST or None, owner=request.user, requester=request.user, initial=initial
    )
    if request.method == "POST" and ADD_ARM not in request.POST and form.is_valid():
        study = form.save()
        messages.success(
            request, f"Study “{study.title}” created (draft). Open it to let participants in."
        )
        return redirect("study-detail", study_id=study.pk)
    return render(request, "researcher/study_form.html", {"form": form, "creating": True})


@login_required
def study_edit(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    if study.is_imported:
        messages.error(request, IMPORTED_READ_ONLY)
        return redirect("study-detail", study_id=study.pk)
    form = StudyForm(request.POST or None, instance=study, requester=request.user)
    if request.method == "POST" and ADD_ARM not in request.POST and form.is_valid():
        form.save()  # ("Add an arm" shows the form again with one more column, unsaved)
        messages.success(request, "Study saved.")
        return redirect("study-detail", study_id=study.pk)
    return render(
        request, "researcher/study_form.html", {"form": form, "study": study, "creating": False}
    )


@login_required
@require_POST
def study_set_status(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    action = request.POST.get("action")
    if study.is_imported and action == "open":
        messages.error(request, IMPORTED_READ_ONLY)
        return redirect("study-detail", study_id=study.pk)
    if action not in ("open", "close"):
        messages.error(request, f"unknown action {action!r}: expected open or close")
        return redirect("study-detail", study_id=study.pk)
    with transaction.atomic():
        if action == "open":
            study.status, study.opened_at = "open", study.opened_at or timezone.now()
            study.save(update_fields=["status", "opened_at"])
            design.run_on_open(study)  # and each arm's own precomputation
        else:  # a line in the log: no action is stored after it (studies.core.closing)
            close_study(study)
    messages.success(request, f"Study {'opened' if action == 'open' else 'closed'}.")
    return redirect("study-detail", study_id=study.pk)


@login_required
@require_POST
def study_links(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    form = GenerateLinksForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("study-detail", study_id=study.pk)
    if study.is_imported:
        messages.error(request, IMPORTED_READ_ONLY)
        return redirect("study-detail", study_id=study.pk)
    if not study.dataset.images.exists():
        messages.error(request, f"the data set {study.dataset.name} has no images to assign")
        return redirect("study-detail", study_id=study.pk)
    created = [enrol_participant(study) for _ in range(form.cleaned_data["count"])]
    messages.success(
        request, f"{len(created)} participant links created ({created[0].code}–{created[-1].code})."
    )
    return redirect(reverse("study-detail", args=[study.pk]) + "#participants")


def study_progress(study: Study) -> dict:
    """Per participant and per image: assignments, finished, best IoU; the latest precompute job."""
    assignments = (
        Assignment.objects.real()  # a practice image is not study data
        .filter(participant__study=study)
        .select_related("participant", "image")
        .annotate(
            best=Max("events__iou"),
            n_events=Count("events", distinct=True),
            n_trials=Count("trials", distinct=True),
            last_ts=Max("events__server_ts"),
            last_trial_ts=Max("trials__server_ts"),
            first_ts=Min("events__server_ts"),
            first_trial_ts=Min("trials__server_ts"),
        )
        .order_by("participant__number", "order")
    )
    participants: dict[int, dict] = {}
    images: dict[int, dict] = {}
    for a in assignments:
        p = participants.setdefault(
            a.participant_id,
            {
                "participant": a.participant,
                "assignments": [],
                "finished": 0,
                "bests": [],
                "last": None,
                "events": 0,
                "time_s": 0.0,
            },
        )
        p["assignments"].append(a)
        p["events"] += a.n_events + a.n_trials
        first, a.last_ts = first_and_last(a.first_ts, a.first_trial_ts, a.last_ts, a.last_trial_ts)
        p["time_s"] += assignment_seconds(a.started_at or first, a.finished_at, a.last_ts)
        p["finished"] += a.status == "finished"
        if a.best is not None:
            p["bests"].append(a.best)
        if a.last_ts and (p["last"] is None or a.last_ts > p["last"]):
            p["last"] = a.last_ts
        im = images.setdefault(
            a.image_id, {"image": a.image, "assigned": 0, "finished": 0, "bests": []}
        )
        im["assigned"] += 1
        im["finished"] += a.status == "finished"
        if a.best is not None:
            im["bests"].append(a.best)
    for p in participants.values():
        participant = p["participant"]
        p["status"] = (
            "completed"
            if participant.completed_at
            else "in progress"
            if p["events"]
            else "consented"
            if participant.consented
            else "not started"
        )
        p["best_mean"] = sum(p["bests"]) / len(p["bests"]) if p["bests"] else None
    for im in images.values():
        im["best"] = max(im["bests"]) if im["bests"] else None
        im["best_mean"] = sum(im["bests"]) / len(im["bests"]) if im["bests"] else None
    participant_rows = sorted(participants.values(), key=lambda p: p["participant"].number)
    # participants enrolled without assignments (an empty data set) still show up
    for participant in study.participants.exclude(pk__in=participants.keys()):
        participant_rows.append(
            {
                "participant": participant,
                "assignments": [],
                "finished": 0,
                "best_mean": None,
                "last": None,
                "events": 0,
                "time_s": 0.0,
                "status": "no images",
            }
        )
    for p in participant_rows:
        p["attention"] = attention_status(study, p["participant"])
        if p["participant"].excluded:
            p["status"] = "excluded"
    total = sum(len(p["assignments"]) for p in participant_rows)
    return {
        "participants": participant_rows,
        "images": sorted(images.values(), key=lambda im: im["image"].index),
        "assignments_total": total,
        "assignments_finished": sum(p["finished"] for p in participant_rows),
        "precompute": study.jobs.filter(kind="precompute").order_by("-created_at").first(),
        "open_jobs": [
            (kind, label, job)
            for kind, label in study.kind_spec.extra.get("open_jobs", {}).items()
            if (job := study.jobs.filter(kind=kind).order_by("-created_at").first())
        ],
    }


PAGE_SIZE = 25
PARTICIPANT_SORTS = {
    "code": lambda p: p["participant"].number,
    "status": lambda p: p["status"],
    "finished": lambda p: p["finished"],
    "best": lambda p: -1.0 if p["best_mean"] is None else p["best_mean"],
    "actions": lambda p: p["events"],
    "time": lambda p: p["time_s"],
    "last": lambda p: p["last"].timestamp() if p["last"] else 0.0,
}
IMAGE_SORTS = {
    "index": lambda im: im["image"].index,
    "finished": lambda im: im["finished"],
    "assigned": lambda im: im["assigned"],
    "best": lambda im: -1.0 if im["best"] is None else im["best"],
}


def _sorted(rows: list, sorts: dict, key: str, default: str) -> tuple[list, str]:
    name = key.lstrip("-")
    if name not in sorts:
        key, name = default, default
    return sorted(rows, key=sorts[name], reverse=key.startswith("-")), key


def table_view(request: HttpRequest, progress: dict) -> dict:
    """The progress tables as the researcher asked for them: participants searched by code or
    crowd id (`q`), sorted (`sort`, `-` for descending) and paginated (`page`); images sorted
    (`isort`) and paginated (`ipage`). The live refresh keeps the same query."""
    q = (request.GET.get("q") or "").strip().lower()
    rows = progress["participants"]
    if q:
        rows = [
            p
            for p in rows
            if q in p["participant"].code.lower() or q in p["participant"].prolific_pid.lower()
        ]
    rows, sort = _sorted(rows, PARTICIPANT_SORTS, request.GET.get("sort", "code"), "code")
    images, isort = _sorted(
        progress["images"], IMAGE_SORTS, request.GET.get("isort", "index"), "index"
    )
    query = {"q": q, "sort": sort, "isort": isort}
    return {
        "participant_page": Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page")),
        "image_page": Paginator(images, PAGE_SIZE).get_page(request.GET.get("ipage")),
        "table_query": query,
        "query": urlencode({k: v for k, v in query.items() if v}),
        "matches": len(rows),
    }


@login_required
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    progress = study_progress(study)
    context = {
        "study": study,
        "protocol": readable_protocol(study),
        "kind_links": study.kind_spec.researcher_links(study),
        "public_join_url": join_url(request, study),
        "links_form": GenerateLinksForm(),
        "progress": progress,
        **table_view(request, progress),
        "is_owner": study.owner_id == request.user.pk,
        "time_on_task": TIME_ON_TASK,
        **design_context(study),
    }
    return render(request, "researcher/study_detail.html", context)


@login_required
def study_progress_fragment(request: HttpRequest, study_id: int) -> HttpResponse:
    """The live progress tables alone (the detail page polls this)."""
    study = researcher_study(request, study_id)
    progress = study_progress(study)
    return render(
        request,
        "researcher/_progress.html",
        {
            "study": study,
            "progress": progress,
            "time_on_task": TIME_ON_TASK,
            **table_view(request, progress),
        },
    )


@login_required
def study_links_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    """Every participant's personal join link (and crowd id) as CSV."""
    study = researcher_study(request, study_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["code", "crowd_id", "join_url", "excluded"])
    for p in study.participants.order_by("number"):
        writer.writerow(
            [p.code, p.prolific_pid, join_url(request, study, p.token), int(p.excluded)]
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="study{study.pk}_links.csv"'
    return response


@login_required
@require_POST
def participant_exclusion(request: HttpRequest, study_id: int, participant_id: int):
    """Mark a participant excluded (with a reason) or include them again. Their data stay in
    the database and the exports (flagged); the analysis pages leave them out."""
    study = researcher_study(request, study_id)
    participant = get_object_or_404(study.participants, pk=participant_id)
    exclude = request.POST.get("excluded")
    if exclude not in ("0", "1"):
        messages.error(request, "excluded: expected 1 (exclude) or 0 (include again)")
        return redirect(reverse("study-detail", args=[study.pk]) + "#progress")
    participant.excluded = exclude == "1"
    participant.excluded_reason = (
        (request.POST.get("reason") or "").strip()[:200] if participant.excluded else ""
    )
    participant.save(update_fields=["excluded", "excluded_reason"])
    messages.success(
        request,
        f"{participant.code} {'excluded' if participant.excluded else 'included again'}.",
    )
    return redirect(reverse("study-detail", args=[study.pk]) + "#progress")


@login_required
def study_image(request: HttpRequest, study_id: int, image_id: int, what: str) -> FileResponse:
    """An image or ground-truth mask of the study's data set (for the replay)."""
    study = researcher_study(request, study_id)
    image = get_object_or_404(study.dataset.images, pk=image_id)
    if what not in ("image", "mask"):
        raise Http404(f"unknown file {what!r}: expected image or mask")
    return FileResponse(
        (image.image if what == "image" else image.mask).open("rb"), content_type="image/png"
    )


@login_required
def assignment_replay(request: HttpRequest, study_id: int, assignment_id: int) -> HttpResponse:
    """One assignment's replay, drawn by the study kind's `replay_page` (a prompting study's
    events, an intervention study's trials)."""
    study = researcher_study(request, study_id)
    assignment = get_object_or_404(
        Assignment.objects.select_related("participant", "image"),
        pk=assignment_id,
        participant__study=study,
    )
    page = study.kind_spec.replay_page
    if page is None:
        raise Http404(f"studies of kind {study.kind_spec.label} have no replay page")
    return page(request, design.for_assignment(assignment), assignment)  # as its arm ran it


@login_required
def study_analysis(request: HttpRequest, study_id: int) -> HttpResponse:
    """ "Analysis & exports": the study kind's own analysis page."""
    study = researcher_study(request, study_id)
    page = study.kind_spec.analysis_page
    if page is None:
        raise Http404(f"studies of kind {study.kind_spec.label} have no analysis page")
    return page(request, study)


def export_context(study: Study) -> dict:
    """What the shared exports box (researcher/_exports.html) shows on an analysis page."""
    return {
        "exports": study.jobs.filter(kind="export")[:10],
        "export_formats": [(f, FORMAT_LABELS.get(f, f)) for f in study_formats(study)],
        "export_left_out": [
            FORMAT_LABELS.get(f, f) for f in FORMATS if f not in study_formats(study)
        ],
    }


@login_required
@require_POST
def export_start(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    try:
        fmt = request.POST.get("format")
        params = {
            name: True for name in ("include_practice", "with_stats") if request.POST.get(name)
        }
        job = start_export(study, fmt, request.user, params)
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"export {job.pk} ({job.format}) started")
    return redirect(reverse("study-analysis", args=[study.pk]) + "#exports")
