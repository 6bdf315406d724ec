"""Intervention studies: annotators delete or insert image regions and see how a classifier's
prediction moves; explanations, VOICE and causal curves are precomputed per image."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from studies.core.kinds import StudyKind, register
from studies.intervention.protocol import OPTIONS


def participant_page(request, study, participant):
    """The intervention workspace (static/intervention/intervene.js) with the study's options."""
    config = {
        "surveyQuestion": study.survey_question,
        "doneUrl": reverse("done", args=[study.pk]),
        "layout": study.option("layout"),
        "overlayOpacity": study.option("overlay_opacity"),
        "overlayStyle": study.option("overlay_style"),
        "minTrials": study.option("min_timesteps"),
    }
    return render(
        request,
        "intervention/intervene.html",
        {"study": study, "participant": participant, "config": config},
    )


def submit(participant, assignment_id: int, data):
    from studies.intervention.trials import submit_trial

    return submit_trial(participant, assignment_id, data)


def assignment_state(participant, assignment) -> dict:
    from studies.intervention.trials import trial_state

    return trial_state(participant, assignment.pk)


def finish(participant, assignment, body: dict) -> None:
    """An intervention image ends when the annotator says so (trials are the log)."""
    from studies.models import Assignment

    Assignment.objects.filter(pk=assignment.pk).exclude(status="finished").update(
        status="finished", finished_at=timezone.now(), stop_reason="finished"
    )


def on_open(study):
    from studies.intervention.precompute import start_image_analyses

    return start_image_analyses(study)


ARM_OUTCOMES = (
    ("flipped", "Prediction flipped (any trial on the image)", True),
    ("area_to_flip", "Smallest area removed to flip (flipping deletions)", False),
    ("gradcam_iou", "Agreement with Grad-CAM (mean IoU of the regions)", False),
)


def arm_units(study) -> list[dict]:
    """One row per assignment with a trial (participant, image, arm): flipped (any trial
    flipped the prediction), area_to_flip (the smallest area fraction of a flipping deletion;
    missing when none flipped) and gradcam_iou (the mean over its trials that have one)."""
    from studies.models import InterventionTrial

    units: dict[int, dict] = {}
    trials = InterventionTrial.objects.filter(
        assignment__participant__study=study,
        assignment__participant__excluded=False,
        assignment__practice=False,
    ).values_list(
        "assignment_id",
        "assignment__participant__code",
        "assignment__image__index",
        "assignment__arm",
        "operation",
        "flipped",
        "area_fraction",
        "gradcam_iou",
    )
    for pk, code, index, arm, operation, flipped, area, iou in trials.iterator(chunk_size=2000):
        u = units.setdefault(
            pk,
            {
                "participant": code,
                "image": index,
                "arm": arm,
                "flips": [],
                "ious": [],
                "any": False,
            },
        )
        u["any"] = u["any"] or bool(flipped)
        if operation == "delete" and flipped and area is not None:
            u["flips"].append(area)
        if iou is not None:
            u["ious"].append(iou)
    return [
        {
            "participant": u["participant"],
            "image": u["image"],
            "arm": u["arm"],
            "flipped": u["any"],
            "area_to_flip": min(u["flips"]) if u["flips"] else None,
            "gradcam_iou": sum(u["ious"]) / len(u["ious"]) if u["ious"] else None,
        }
        for u in units.values()
    ]


def tidy_tables(study, archive, include_practice: bool = False) -> dict:
    from studies.intervention.export import export_intervention_parts

    return export_intervention_parts(study, archive, include_practice)


def analysis_page(request, study):
    from studies.intervention.views_analysis import analysis_page as page

    return page(request, study)


def replay_page(request, study, assignment):
    from studies.intervention.views import replay_page as page

    return page(request, study, assignment)


def attention_failed(assignment, threshold: float):
    """Failed: finished without any region overlapping the object with IoU >= threshold."""
    if assignment.status != "finished":
        return None
    import numpy as np
    from PIL import Image

    from interventions.metrics import rle_decode

    with assignment.image.mask.open("rb") as handle:
        gt = np.asarray(Image.open(handle).convert("L")) > 127
    for rle in assignment.trials.values_list("region_rle", flat=True):
        region = rle_decode(rle)
        union = np.logical_or(region, gt).sum()
        if union and np.logical_and(region, gt).sum() / union >= threshold:
            return False
    return True


def fit_problem(dataset, model):
    """An intervention study asks whether the classifier's prediction of each image's class
    moves: every image needs a class label, and the classifier's classes must include them."""
    images = dataset.images
    n = images.count()
    if n == 0:
        return "dataset", f"the data set {dataset.name} has no images"
    unlabelled = images.filter(class_label__isnull=True).count()
    if unlabelled:
        return "dataset", (
            f"{unlabelled} of the {n} images of {dataset.name} have no class label; an "
            "intervention study follows the classifier's probability of each image's class"
        )
    if model is None or not model.class_names:
        return None
    classes = len(model.class_names)
    outside = sorted(
        set(
            images.exclude(class_label__range=(0, classes - 1)).values_list(
                "class_label", flat=True
            )
        )
    )
    if outside:
        return "model", (
            f"the classes of {model.name} (0 to {classes - 1}) do not include the label(s) "
            f"{', '.join(map(str, outside))} of {dataset.name}"
        )
    named = set(images.exclude(class_name="").values_list("class_name", flat=True))
    unknown = sorted(named - set(model.class_names))
    if unknown:
        return "model", (
            f"the classes of {model.name} do not include {', '.join(unknown)}, class name(s) "
            f"of {dataset.name}'s images"
        )
    return None


def researcher_links(study) -> list:
    return [
        (
            "intervention-analysis",
            "Interventions",
            "trials, explanations and analyses",
            reverse("intervention-study", args=[study.pk]),
        )
    ]


INTERVENTION = register(
    StudyKind(
        name="intervention",
        label="Intervention",
        options=OPTIONS,
        model_kinds=("classifier",),
        participant_page=participant_page,
        action_route="trials",
        submit=submit,
        assignment_state=assignment_state,
        finish=finish,
        on_open=on_open,
        arm_outcomes=ARM_OUTCOMES,
        arm_units=arm_units,
        tidy_tables=tidy_tables,
        researcher_links=researcher_links,
        analysis_page=analysis_page,
        replay_page=replay_page,
        export_formats=("tidy",),
        fit_problem=fit_problem,
        attention_failed=attention_failed,
        instructions_template="intervention/_howto.html",
        survey_question="Did the model look at the object?",
        extra={"precompute_label": "Explanations, VOICE and causal curves"},
    )
)
