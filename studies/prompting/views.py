"""Pages of prompting studies: the annotation page participants work in and the researcher's
replay of one assignment (every event, in order, with its mask and score)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from studies.models import Assignment, PromptEvent


def client_options(study) -> dict:
    """The protocol options the annotation page reads (in its config), as `study` (or an arm's
    view of it) runs them."""
    return {
        "showGroundTruth": bool(study.option("show_ground_truth")),
        "showScore": bool(study.option("show_score")),
        "maxRounds": study.option("max_rounds"),
        "minGreen": study.option("min_green"),
        "minRed": study.option("min_red"),
        "surveyQuestion": study.survey_question,
        "layout": study.option("layout"),
        "overlayStyle": study.option("overlay_style"),
        "overlayOpacity": study.option("overlay_opacity"),
        "roundIndicator": bool(study.option("round_indicator")),
        "stagnationLimit": study.option("stagnation_limit"),
        "minTimesteps": study.option("min_timesteps"),
    }


def annotate_page(request: HttpRequest, study, participant) -> HttpResponse:
    """The annotation canvas (static/prompting/annotate.js) with this study's options (within
    a design's arms, each assignment's state carries its arm's options: events.py)."""
    config = {
        "studyId": study.pk,
        "code": participant.code,
        **client_options(study),
        "doneUrl": reverse("done", args=[study.pk]),
    }
    response = render(
        request,
        "prompting/annotate.html",
        {"study": study, "participant": participant, "config": config},
    )
    # Cross-origin isolation (with SecurityMiddleware's COOP same-origin): lets the browser
    # decoder use WebAssembly threads. Everything the page loads is same-origin.
    response.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
    return response


def replay_data(assignment: Assignment) -> dict:
    """Every logged event of an assignment, in seq order, as the replay page draws it."""
    events = assignment.events.order_by("seq").values(
        "seq",
        "action",
        "mode",
        "x",
        "y",
        "green",
        "red",
        "timestep",
        "round",
        "iou",
        "predicted_iou",
        "mask_rle",
        "round_ended",
        "finished",
        "stop_reason",
        "server_ts",
        "latency_ms",
        "stagnation",
    )
    start = None
    rows = []
    for e in events:
        start = start or e["server_ts"]
        e["t_s"] = round((e.pop("server_ts") - start).total_seconds(), 3)
        rows.append(e)
    return {
        "events": rows,
        "stop_reason": assignment.stop_reason or None,
        "status": assignment.status,
    }


def replay_page(request: HttpRequest, study, assignment: Assignment) -> HttpResponse:
    """The prompting kind's replay: every event on the image, scrubbable, with its mask."""
    data = replay_data(assignment)
    data.update(
        image_url=reverse("study-image", args=[study.pk, assignment.image_id, "image"]),
        mask_url=reverse("study-image", args=[study.pk, assignment.image_id, "mask"]),
        width=assignment.image.width,
        height=assignment.image.height,
        max_rounds=study.option("max_rounds"),
    )
    timesteps = [e for e in data["events"] if e["timestep"] is not None]
    best = max(timesteps, key=lambda e: (e["iou"] or 0.0, -e["timestep"]), default=None)
    context = {
        "study": study,
        "assignment": assignment,
        "replay": data,
        "n_timesteps": len(timesteps),
        "best": best,
        "final": timesteps[-1] if timesteps else None,
        "n_events": PromptEvent.objects.filter(assignment=assignment).count(),
    }
    return render(request, "prompting/replay.html", context)
