"""Prompting studies (PointPrompt style): annotators place green and red points, the
segmentation model answers each timestep with a mask and its IoU."""

from __future__ import annotations

from studies.core.dispatch import start_job
from studies.core.kinds import Option, StudyKind, register
from studies.core.workspace_options import workspace_options
from studies.prompting.protocol import DEFAULT_PROTOCOL, MASK_CHOICES, SINCE

HELP = {
    "show_ground_truth": "Show annotators the object's true outline in its own panel (PointPrompt: on).",
    "show_score": "Show the IoU score (the match with the true outline) under the mask (PointPrompt: on).",
    "min_green": "Green points needed before the first prediction.",
    "min_red": "Red points needed before the first prediction.",
    "mask_choice": "SAM answers each click with three masks; which one the annotator sees.",
    "chain_low_res_mask": (
        "Give SAM its previous low-resolution mask as an extra input with each click "
        "(off in PointPrompt)."
    ),
    "stagnation_limit": (
        "A round ends after this many predictions in a row that do not improve the score "
        "(PointPrompt's code: 10)."
    ),
    "max_rounds": "Rounds per image; the image ends when the last round ends.",
    "browser_decoder": (
        "Show each click's mask at once with SAM's decoder in the browser when the device can "
        "(the server's mask stays the record; the classical segmenter has no browser preview)."
    ),
    "hover_preview": (
        "Show the mask under the resting pointer before a click, as the SAM demo does (needs "
        "the in-browser preview above)."
    ),
}
LABELS = {
    "show_ground_truth": "Show the true outline",
    "show_score": "Show the score",
    "min_green": "Green points before a prediction",
    "min_red": "Red points before a prediction",
    "mask_choice": "Mask shown",
    "chain_low_res_mask": "Feed the previous mask back",
    "stagnation_limit": "Predictions without improvement that end a round",
    "max_rounds": "Rounds per image",
    "browser_decoder": "In-browser mask preview",
    "hover_preview": "Preview under the resting pointer",
}
CHOICE_LABELS = {
    "mask_choice": {
        "first": "The first of SAM's masks (as PointPrompt)",
        "best_predicted": "The mask SAM scores highest",
    }
}
MINIMUM = {"min_green": 0, "min_red": 0, "stagnation_limit": 1, "max_rounds": 1}
CHOICES = {"mask_choice": MASK_CHOICES}
OPTIONS = {
    name: Option(
        default,
        HELP[name],
        CHOICES.get(name, ()),
        MINIMUM.get(name),
        since=SINCE.get(name, 1),
        label=LABELS[name],
        choice_labels=CHOICE_LABELS.get(name, {}),
    )
    for name, default in DEFAULT_PROTOCOL.items()
} | workspace_options(rounds=True, step="predictions")


def participant_page(request, study, participant):
    from studies.prompting.views import annotate_page

    return annotate_page(request, study, participant)


def analysis_page(request, study):
    from studies.prompting.views_analysis import analysis_page as page

    return page(request, study)


def replay_page(request, study, assignment):
    from studies.prompting.views import replay_page as page

    return page(request, study, assignment)


def attention_failed(assignment, threshold: float):
    """Failed: finished with a best IoU below the threshold (or no timestep)."""
    if assignment.status != "finished":
        return None
    best = max(assignment.events.exclude(iou=None).values_list("iou", flat=True), default=None)
    return best is None or best < threshold


def submit(participant, assignment_id: int, data):
    from studies.prompting.events import submit_event

    return submit_event(participant, assignment_id, data)


def assignment_state(participant, assignment) -> dict:
    from studies.prompting.events import assignment_state as state

    return state(participant, assignment)


def finish(participant, assignment, body: dict) -> None:
    """Finishing is a logged event, so the analysis sees who ended the image and when."""
    from studies.prompting.events import submit_event

    cid = body.get("client_event_id") or f"finish-{assignment.pk}-{assignment.next_seq}"
    submit_event(
        participant,
        assignment.pk,
        {
            "client_event_id": cid,
            "seq": assignment.next_seq,
            "action": "finish",
            "client_ts": body.get("client_ts"),
        },
    )


def on_open(study):
    """Precompute every image's embedding (batch queue) so the first click is fast, and, for a
    SAM model, export its decoder to ONNX for the browser (cached by weights sha256)."""
    from studies.prompting.decoder_files import unavailable_reason

    jobs = [
        start_job(
            study,
            "precompute",
            "workers.tasks.precompute_embeddings",
            params={"model": study.model.model_id},
        )
    ]
    if unavailable_reason(study.model) is None and study.option("browser_decoder"):
        jobs.append(
            start_job(
                study,
                "onnx_export",
                "workers.tasks.export_decoder",
                params={"model": study.model.model_id},
            )
        )
    return jobs


ARM_OUTCOMES = (
    ("best", "Best IoU", False),
    ("final", "Final IoU", False),
    ("timesteps", "Timesteps per image", False),
    ("overprompted", "Overprompted (of annotator-ended images)", True),
    ("stagnation_ended", "Ended by stagnation (of ended images)", True),
)


def arm_units(study) -> list[dict]:
    """One row per scored assignment (participant, image, arm) with the arm outcomes (see
    `arm_unit`). Excluded participants are left out."""
    from studies.models import Assignment
    from studies.prompting.analysis import arm_unit, assignment_figures, load_logs

    arm_of = dict(
        Assignment.objects.real().filter(participant__study=study).values_list("pk", "arm")
    )
    rows = (
        arm_unit(assignment_figures(log), arm_of[log.assignment_id]) for log in load_logs(study)
    )
    return [row for row in rows if row is not None]


PROMPTING = register(
    StudyKind(
        name="prompting",
        label="Prompting",
        options=OPTIONS,
        model_kinds=("sam", "classical"),
        participant_page=participant_page,
        action_route="events",
        submit=submit,
        assignment_state=assignment_state,
        finish=finish,
        on_open=on_open,
        arm_outcomes=ARM_OUTCOMES,
        arm_units=arm_units,
        analysis_page=analysis_page,
        replay_page=replay_page,
        export_formats=("pointprompt", "tidy", "coco"),
        attention_failed=attention_failed,
        instructions_template="prompting/_howto.html",
        # plain words (the participant's page says "reference outline" for the ground truth)
        survey_question=(
            "Did the model's mask outline the object better than the reference outline "
            "(the ground truth) does?"
        ),
        extra={
            "precompute_label": "Image embeddings",
            # further jobs opening starts, shown on the study page when one exists
            "open_jobs": {"onnx_export": "Browser decoder (SAM's decoder exported to ONNX)"},
        },
    )
)
