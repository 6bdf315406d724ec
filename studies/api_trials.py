"""The participants' API of intervention studies (DESIGN.md "API"): post a trial, resume, the
unmodified image's top-5, and the overlay the study shows as its experimental condition."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response

from .api import ParticipantView, participant_or_error, require_consent
from .api_errors import ApiError
from .events import owned_assignment
from .overlays import COLOUR_MAPS, live_map, overlay_png
from .trials import submit_trial, trial_state


def _intervention_assignment(request, assignment_id: int, *, write: bool = False):
    participant = participant_or_error(request, write=write)
    require_consent(participant)
    if participant.study.kind != "intervention":
        raise ApiError(400, "this study is not an intervention study")
    return participant, owned_assignment(participant, assignment_id)


class TrialsView(ParticipantView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="Trials so far (to resume an intervention assignment)",
    )
    def get(self, request, assignment_id: int):
        participant, _ = _intervention_assignment(request, assignment_id)
        return Response(trial_state(participant, assignment_id))

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary="Post one trial {client_event_id, seq, operation, region_rle, substrate}",
    )
    def post(self, request, assignment_id: int):
        participant = participant_or_error(request, write=True)
        require_consent(participant)
        return Response(submit_trial(participant, assignment_id, request.data))


class InterventionInfoView(ParticipantView):
    """The unmodified image's prediction (top-5 when the study shows it), the target class, the
    goal, substrate and overlay condition, and the overlay's URL when one is shown."""

    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="Top-5, goal and overlay of an intervention assignment",
    )
    def get(self, request, assignment_id: int):
        participant, assignment = _intervention_assignment(request, assignment_id)
        study = participant.study
        from workers.intervention_tasks import (
            predict_image_classes,  # light module: no torch at import
        )

        try:
            classes = predict_image_classes.apply_async(
                args=[study.model_id, assignment.image_id], queue="interactive"
            ).get(timeout=settings.INTERACTIVE_TIMEOUT_S)
        except Exception as exc:
            raise ApiError(
                503, f"the classifier is unavailable ({type(exc).__name__}: {exc}); retry"
            ) from exc
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
            }
        )


class OverlayView(ParticipantView):
    """The study's overlay (Grad-CAM or VOICE uncertainty) as an RGBA PNG at the image size;
    404 when the study shows none."""

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, assignment_id: int):
        participant, assignment = _intervention_assignment(request, assignment_id)
        study = participant.study
        overlay = study.option("overlay")
        if overlay not in ("gradcam", "voice"):
            raise ApiError(404, "this study shows no overlay")
        try:
            values = live_map(assignment.image_id, study.model_id, overlay)
        except Exception as exc:
            raise ApiError(
                503, f"the {overlay} map is unavailable ({type(exc).__name__}: {exc}); retry"
            ) from exc
        image = assignment.image
        png = overlay_png(values, image.width, image.height, COLOUR_MAPS.get(overlay, "inferno"))
        return HttpResponse(png, content_type="image/png")
