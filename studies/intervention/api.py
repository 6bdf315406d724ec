"""The participants' API of intervention studies (docs/design.md "API"): post a trial, resume, the
unmodified image's top-5, and the overlay the study shows as its experimental condition."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response

from studies.core import design
from studies.core.api import (
    ActionsView,
    ParticipantView,
    participant_or_error,
    require_consent,
    study_kind,
)
from studies.core.api_errors import ApiError
from studies.core.api_schema import PARTICIPANT_ERRORS, TrialRequestSerializer, errors
from studies.core.dispatch import run_interactive
from studies.core.recorder import owned_assignment
from studies.core.rle import MAX_RLE_CHARS
from studies.intervention.overlays import COLOUR_MAPS, live_map, overlay_png
from studies.intervention.trials import trial_state


def _intervention_assignment(request, assignment_id: int, *, write: bool = False):
    participant = participant_or_error(request, write=write)
    require_consent(participant)
    study_kind(participant, "intervention")
    return participant, owned_assignment(participant, assignment_id)


class TrialsView(ActionsView):
    route = "trials"
    # a region's compressed RLE may be long (a checkerboard brush); everything else is small
    max_body_bytes = MAX_RLE_CHARS + 64 * 1024

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Trials so far (to resume an intervention assignment)",
    )
    def get(self, request, assignment_id: int):
        participant, _ = _intervention_assignment(request, assignment_id)
        return Response(trial_state(participant, assignment_id))

    @extend_schema(
        request=TrialRequestSerializer,
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Post one trial (delete or insert a region) of an intervention study",
    )
    def post(self, request, assignment_id: int, route: str = ""):
        return super().post(request, assignment_id, route)


class InterventionInfoView(ParticipantView):
    """The unmodified image's prediction (top-5 when the study shows it), the target class, the
    goal, substrate and overlay condition, and the overlay's URL when one is shown."""

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Top-5, goal and overlay of an intervention assignment",
    )
    def get(self, request, assignment_id: int):
        participant, assignment = _intervention_assignment(request, assignment_id)
        study = design.for_assignment(assignment)  # the arm's options and model
        classes = run_interactive(
            "workers.intervention_tasks.predict_image_classes",
            [study.model.pk, assignment.image_id],
            what="classifier",
        )
        overlay = study.option("overlay")
        show_top5 = bool(study.option("show_top5"))
        return Response(
            {
                "id": assignment.pk,
                "goal": study.option("goal"),
                "substrate": study.option("substrate"),
                # the zero substrate's colour: 0 in normalised space is the normalisation mean
                "substrate_rgb": [
                    round(255 * m) for m in (study.model.mean or (0.485, 0.456, 0.406))
                ],
                "overlay": overlay,
                "overlay_url": (
                    request.build_absolute_uri(
                        reverse("api-assignment-overlay", args=[assignment.pk])
                    )
                    if overlay in ("gradcam", "voice")
                    else None
                ),
                "show_top5": show_top5,
                "top5": classes["top5"] if show_top5 else None,
                "prediction": classes["prediction"],
                "target_class": classes["target_class"],
                "target_name": classes["target_name"],
                "prob_target": classes["prob_target"],
                "class_names": classes["class_names"],
                **(
                    {"config": {"minTrials": study.option("min_timesteps")}}
                    if design.method(participant.study) == "within"
                    else {}
                ),
            }
        )


class OverlayView(ParticipantView):
    """The study's overlay (Grad-CAM or VOICE uncertainty) as an RGBA PNG at the image size;
    404 when the study shows none."""

    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY, **errors(*PARTICIPANT_ERRORS)}
    )
    def get(self, request, assignment_id: int):
        participant, assignment = _intervention_assignment(request, assignment_id)
        study = design.for_assignment(assignment)  # the arm's options and model
        overlay = study.option("overlay")
        if overlay not in ("gradcam", "voice"):
            raise ApiError(404, "this study shows no overlay")
        try:
            values = live_map(assignment.image_id, study.model.pk, overlay)
        except Exception as exc:
            raise ApiError(
                503, f"the {overlay} map is unavailable ({type(exc).__name__}: {exc}); retry"
            ) from exc
        image = assignment.image
        png = overlay_png(values, image.width, image.height, COLOUR_MAPS.get(overlay, "inferno"))
        return HttpResponse(png, content_type="image/png")
