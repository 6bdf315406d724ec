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
from django.db.models import (
    Avg,
    Count,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
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
from studies.core.quality import attention_statuses
from studies.core.time_on_task import TIME_ON_TASK, assignment_seconds, first_and_last
from studies.models import Assignment, DatasetImage, Participant, Study

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


# The progress tables, computed in the database: a study can have PointPrompt's size (200,000
# timesteps, 18,000 assignments), so no request loads every assignment. A table's page is found
# with only its sort key computed, then only that page's rows get all their figures.
PAGE_SIZE = 25
REPLAY_LINKS = 10  # replay links in a participant's row; the rest are one click away (`who`)
ASSIGNMENTS_PAGE_SIZE = 100  # the list of one participant's assignments (`who`, `apage`)
# sort key -> the column or figure (see _participant_figures, _image_figures) it orders by
PARTICIPANT_SORTS = {  # sort key -> the figure of _participant_stats it orders by
    "code": "number",
    "status": "status",
    "finished": "finished",
    "best": "best",
    "actions": "actions",
    "time": "time",
    "last": "last",
}
IMAGE_SORTS = {"index": "index", "finished": "finished", "assigned": "assigned", "best": "best"}
# a participant's status, first match wins (an excluded participant shows as excluded)
STATUS_RULES = (
    ("excluded", "excluded"),
    ("no images", "no_images"),
    ("completed", "completed"),
    ("in progress", "acted"),
    ("consented", "consented"),
    ("not started", None),
)
EVENTS = Assignment._meta.get_field("events").related_model  # a prompting study's log
TRIALS = Assignment._meta.get_field("trials").related_model  # an intervention study's log


def _of_assignment(log, aggregate):
    """One figure of an assignment's logged actions (`log`: EVENTS or TRIALS), as a
    subquery of an Assignment queryset."""
    rows = log.objects.filter(assignment=OuterRef("pk")).order_by().values("assignment")
    return Subquery(rows.annotate(value=aggregate).values("value"))


def _best_of_assignment():
    return _of_assignment(EVENTS, Max("iou"))


def _image_figures(study: Study) -> dict:
    """The image table's figures, as expressions over DatasetImage rows."""
    assignments = Assignment.objects.real().filter(participant__study=study)

    def per_image(aggregate, rows=assignments):
        rows = rows.filter(image=OuterRef("pk")).order_by().values("image")
        return Subquery(rows.annotate(v=aggregate).values("v"))

    return {
        "assigned": Coalesce(per_image(Count("pk")), 0),
        "finished": Coalesce(per_image(Count("pk", filter=Q(status="finished"))), 0),
        "best": per_image(Max("events__iou")),
        "best_mean": per_image(Avg("best"), assignments.annotate(best=_best_of_assignment())),
    }


def _sorted(rows, sorts: dict, key: str, default: str, figures: dict, tiebreak: str):
    """`rows` ordered in the database by the sort key (`-` for descending; an unknown key
    falls back to `default`), a missing value lowest; only the sort key's figure is computed.
    Returns (rows, key)."""
    name = key.lstrip("-")
    if name not in sorts:
        key, name = default, default
    column = sorts[name]
    if column in figures:
        rows = rows.annotate(**{column: figures[column]})
    descending = key.startswith("-")
    order = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_first=True)
    return rows.order_by(order, tiebreak), key


def _page(rows, number, size: int = PAGE_SIZE):
    """The page of a queryset of pks: (page, the pks on it)."""
    page = Paginator(rows.values_list("pk", flat=True), size).get_page(number)
    return page, list(page.object_list)


def _replay_links(assignments, limit: int | None = None) -> list[dict]:
    """Assignments as the replay links show them (pk, participant, image index, status, best
    IoU), in order; at most `limit` per participant."""
    rows = assignments.annotate(best=_best_of_assignment())
    if limit is not None:
        rank = Window(RowNumber(), partition_by=F("participant_id"), order_by=F("order").asc())
        rows = rows.annotate(rank=rank).filter(rank__lte=limit)
    fields = ("pk", "participant_id", "image__index", "status", "best")
    return list(rows.order_by("participant_id", "order").values(*fields))


STATUS_ORDER = {label: rank for rank, label in enumerate(sorted(s for s, _ in STATUS_RULES))}


def _participant_stats(study: Study, pks: list[int]) -> dict[int, dict]:
    """The participant table's figures of participants `pks`, from grouped queries (one per
    log and one over the assignments), whatever their number: {pk: {number, assigned,
    finished, actions, last, best (mean best IoU), time (s), status_label, status}}. Keyed by
    the sort names of PARTICIPANT_SORTS."""
    if not pks:
        return {}
    people = {
        row["pk"]: row
        for row in Participant.objects.filter(pk__in=pks).values(
            "pk", "number", "excluded", "completed_at", "consented_at"
        )
    }
    assignments = list(
        Assignment.objects.real()
        .filter(participant_id__in=pks)
        .values("pk", "participant_id", "status", "started_at", "finished_at")
    )
    logged = {}
    for log in (EVENTS, TRIALS):
        query = log.objects.filter(assignment__participant_id__in=pks, assignment__practice=False)
        extra = {"best": Max("iou")} if log is EVENTS else {}
        for row in (
            query.values("assignment_id")
            .annotate(n=Count("pk"), first=Min("server_ts"), last=Max("server_ts"), **extra)
            .order_by()
        ):
            seen = logged.setdefault(
                row["assignment_id"], {"n": 0, "first": None, "last": None, "best": None}
            )
            seen["n"] += row["n"]
            seen["first"], _ = first_and_last(seen["first"], row["first"])
            _, seen["last"] = first_and_last(seen["last"], row["last"])
            if row.get("best") is not None:
                seen["best"] = row["best"]
    out = {
        pk: {"pk": pk, "number": p["number"], "assigned": 0, "finished": 0, "actions": 0,
             "last": None, "bests": [], "time": 0.0}
        for pk, p in people.items()
    }  # fmt: skip
    for a in assignments:
        row = out[a["participant_id"]]
        seen = logged.get(a["pk"], {"n": 0, "first": None, "last": None, "best": None})
        row["assigned"] += 1
        row["finished"] += a["status"] == "finished"
        row["actions"] += seen["n"]
        _, row["last"] = first_and_last(row["last"], seen["last"])
        if seen["best"] is not None:
            row["bests"].append(seen["best"])
        row["time"] += assignment_seconds(
            a["started_at"] or seen["first"], a["finished_at"], seen["last"]
        )
    for pk, row in out.items():
        p = people[pk]
        bests = row.pop("bests")
        row["best"] = sum(bests) / len(bests) if bests else None
        flags = {
            "excluded": p["excluded"],
            "no_images": row["assigned"] == 0,
            "completed": p["completed_at"] is not None,
            "acted": row["actions"] > 0,
            "consented": p["consented_at"] is not None,
        }
        label = next(label for label, flag in STATUS_RULES if flag is None or flags[flag])
        row["status_label"], row["status"] = label, STATUS_ORDER[label]
        row["code"] = row["number"]
    return out


def study_progress(study: Study, query: dict | None = None) -> dict:
    """The study's progress as the page shows it: the totals, the precompute and open jobs, and
    the rows of the participant and image pages asked for (`query`: q, sort, page, isort,
    ipage, who, apage; see table_view). Per participant: assignments, finished, mean best IoU,
    actions, time on task, last action, status, the first replay links, the attention
    checks; per image: assigned, finished, best and mean best IoU. Aggregated in the database,
    for the rows shown only, so a request costs the same few queries at any size."""
    query = query or {}
    real = Assignment.objects.real().filter(participant__study=study)
    totals = real.aggregate(total=Count("pk"), finished=Count("pk", filter=Q(status="finished")))

    # participants: search over all; sorted by code in the database (then only the page's
    # rows get figures), by a figure from grouped queries over the matches
    people = study.participants.all()
    if q := query.get("q", ""):
        people = people.filter(Q(code__icontains=q) | Q(prolific_pid__icontains=q))
    key = query.get("sort", "code")
    sort = key if key.lstrip("-") in PARTICIPANT_SORTS else "code"
    if sort.lstrip("-") == "code":
        people = people.order_by("-number" if sort.startswith("-") else "number")
        participant_page, pks = _page(people, query.get("page"))
        stats = _participant_stats(study, pks)
    else:
        stats = _participant_stats(study, list(people.values_list("pk", flat=True)))
        name = sort.lstrip("-")
        ordered = sorted(stats.values(), key=lambda row: row["number"])  # ties by code
        known = [row for row in ordered if row[name] is not None]
        missing = [row for row in ordered if row[name] is None]  # lowest, either way
        known.sort(key=lambda row: row[name], reverse=sort.startswith("-"))
        ordered = missing + known if not sort.startswith("-") else known + missing
        participant_page = Paginator([row["pk"] for row in ordered], PAGE_SIZE).get_page(
            query.get("page")
        )
        pks = list(participant_page.object_list)
    shown = study.participants.filter(pk__in=pks).in_bulk()
    links: dict[int, list] = {pk: [] for pk in pks}
    for a in _replay_links(real.filter(participant_id__in=pks), REPLAY_LINKS):
        links[a["participant_id"]].append(a)
    attention = attention_statuses(study, pks)
    participant_page.object_list = rows = []
    for pk in pks:
        figures = stats[pk]
        rows.append(
            {
                "participant": shown[pk],
                "status": figures["status_label"],
                "assigned": figures["assigned"],
                "finished": figures["finished"],
                "assignments": links[pk],  # the first REPLAY_LINKS of those assigned
                "more": figures["assigned"] - len(links[pk]),
                "best_mean": figures["best"],
                "events": figures["actions"],
                "time_s": figures["time"],
                "last": figures["last"],
                "attention": attention.get(pk, ""),
            }
        )

    # images of the study's assignments, likewise
    image_figures = _image_figures(study)
    images = DatasetImage.objects.filter(pk__in=real.values("image"))
    images, isort = _sorted(
        images, IMAGE_SORTS, query.get("isort", "index"), "index", image_figures, "index"
    )
    image_page, image_pks = _page(images, query.get("ipage"))
    shown_images = DatasetImage.objects.filter(pk__in=image_pks).annotate(**image_figures)
    by_pk = shown_images.in_bulk()
    image_page.object_list = image_rows = [
        {
            "image": by_pk[pk],
            "assigned": by_pk[pk].assigned,
            "finished": by_pk[pk].finished,
            "best": by_pk[pk].best,
            "best_mean": by_pk[pk].best_mean,
        }
        for pk in image_pks
    ]

    return {
        "participants": rows,
        "participant_page": participant_page,
        "matches": participant_page.paginator.count,
        "sort": sort,
        "images": image_rows,
        "image_page": image_page,
        "isort": isort,
        "who": _assignments_of(study, query.get("who", ""), query.get("apage")),
        "assignments_total": totals["total"],
        "assignments_finished": totals["finished"],
        "precompute": study.jobs.filter(kind="precompute").order_by("-created_at").first(),
        "open_jobs": [
            (kind, label, job)
            for kind, label in study.kind_spec.extra.get("open_jobs", {}).items()
            if (job := study.jobs.filter(kind=kind).order_by("-created_at").first())
        ],
    }


def _assignments_of(study: Study, code: str, number) -> dict | None:
    """Every assignment of one participant (by code), a page at a time: where a participant
    row's "and k more" link goes."""
    if not code:
        return None
    participant = study.participants.filter(code=code).first()
    if participant is None:
        return {"code": code, "participant": None}
    rows = Assignment.objects.real().filter(participant=participant).order_by("order")
    page, pks = _page(rows, number, ASSIGNMENTS_PAGE_SIZE)
    page.object_list = _replay_links(rows.filter(pk__in=pks))
    return {"code": code, "participant": participant, "page": page}


def table_view(request: HttpRequest, study: Study) -> dict:
    """The progress tables as the researcher asked for them: participants searched by code or
    crowd id (`q`), sorted (`sort`, `-` for descending) and paginated (`page`); images sorted
    (`isort`) and paginated (`ipage`); one participant's assignments (`who`, a code; `apage`).
    The live refresh keeps the same query."""
    get = request.GET
    asked = {name: (get.get(name) or "").strip() for name in ("q", "sort", "isort", "who")}
    asked["q"] = asked["q"].lower()
    pages = {name: get.get(name) for name in ("page", "ipage", "apage")}
    progress = study_progress(study, {**asked, **pages})
    query = {"q": asked["q"], "sort": progress["sort"], "isort": progress["isort"]}
    if asked["who"]:
        query["who"] = asked["who"]
    context = {
        "progress": progress,
        "participant_page": progress["participant_page"],
        "image_page": progress["image_page"],
        "table_query": query,
        "query": urlencode({k: v for k, v in query.items() if v}),
        "matches": progress["matches"],
    }
    here = {k: v for k, v in query.items() if v}
    for name, page in (("page", progress["participant_page"]), ("ipage", progress["image_page"])):
        if page.number > 1:
            here[name] = page.number
    for row in progress["participants"]:  # "and k more": that participant's assignments
        row["more_href"] = "?" + urlencode({**here, "who": row["participant"].code})
    who = progress["who"]
    if who and who.get("page"):
        page = who["page"]
        steps = {"previous": (page.has_previous(), -1), "next": (page.has_next(), 1)}
        context["who_pager"] = {
            name: "?" + urlencode({**here, "apage": page.number + step})
            for name, (there, step) in steps.items()
            if there
        }
        context["who_close"] = "?" + urlencode({k: v for k, v in here.items() if k != "who"})
    return context


@login_required
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = researcher_study(request, study_id)
    context = {
        "study": study,
        "protocol": readable_protocol(study),
        "kind_links": study.kind_spec.researcher_links(study),
        "public_join_url": join_url(request, study),
        "links_form": GenerateLinksForm(),
        **table_view(request, study),
        "is_owner": study.owner_id == request.user.pk,
        "time_on_task": TIME_ON_TASK,
        **design_context(study),
    }
    return render(request, "researcher/study_detail.html", context)


@login_required
def study_progress_fragment(request: HttpRequest, study_id: int) -> HttpResponse:
    """The live progress tables alone (the detail page polls this)."""
    study = researcher_study(request, study_id)
    return render(
        request,
        "researcher/_progress.html",
        {"study": study, "time_on_task": TIME_ON_TASK, **table_view(request, study)},
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
