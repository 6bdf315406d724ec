"""The participants' API of the browser decoder (docs/browser_decoder.md): the study model's
exported SAM decoder and an image's float16 embedding, served as files (nothing is computed
here: a missing embedding file is written by a worker task), and what a page shows it showed
(`events/<client_event_id>/shown`)."""

from __future__ import annotations

from django.http import HttpResponseNotModified
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response

from interventions.segmentation.browser import DECODER_FORMAT
from studies.core import design, storage
from studies.core.api import ParticipantView, participant_or_error, require_consent, study_kind
from studies.core.api_errors import ApiError
from studies.core.api_schema import PARTICIPANT_ERRORS, errors
from studies.core.dispatch import run_interactive
from studies.core.recorder import owned_assignment
from studies.core.rle import MAX_RLE_CHARS
from studies.prompting.decoder_files import (
    decoder_name,
    embedding_name,
    study_unavailable_reason,
)
from studies.prompting.events import record_shown

IMMUTABLE = "private, max-age=31536000, immutable"


def _assignment(request, assignment_id: int):
    participant = participant_or_error(request)
    require_consent(participant)
    study_kind(participant, "prompting")
    return owned_assignment(participant, assignment_id)


def _immutable_file(request, name: str, etag: str, content_type: str):
    if request.META.get("HTTP_IF_NONE_MATCH") == etag:
        response = HttpResponseNotModified()
    else:
        response = storage.file_response("embeddings", name, content_type)
    response["ETag"] = etag
    response["Cache-Control"] = IMMUTABLE
    return response


class DecoderView(ParticipantView):
    """The study model's SAM prompt encoder + mask decoder as ONNX; 404 with the reason when
    there is none (a classical model, the option off, or not exported yet)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, assignment_id: int):
        assignment = _assignment(request, assignment_id)
        study = design.for_assignment(assignment)  # the arm's model
        reason = study_unavailable_reason(study)
        if reason:
            raise ApiError(404, reason)
        name = decoder_name(study.model)
        if not storage.exists("embeddings", name):
            raise ApiError(404, "the decoder is not exported yet (the study's onnx_export job)")
        etag = f'"{study.model.weights_sha256[:32]}-{DECODER_FORMAT}"'
        return _immutable_file(request, name, etag, "application/octet-stream")


class EmbeddingView(ParticipantView):
    """The assignment image's SAM embedding as float16 (`SAMEMB16`, browser.py); written from
    the shared embedding cache by the `browser_embedding` task when missing."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, assignment_id: int):
        assignment = _assignment(request, assignment_id)
        study = design.for_assignment(assignment)  # the arm's model
        reason = study_unavailable_reason(study)
        if reason:
            raise ApiError(404, reason)
        image_sha = assignment.image.sha256
        etag = f'"{image_sha[:32]}-{study.model.model_id}"'
        name = embedding_name(study.model, image_sha)
        if not storage.exists("embeddings", name):
            run_interactive(
                "workers.tasks.browser_embedding",
                [study.model.pk, assignment.image_id],
                what="embedding",
            )
            if not storage.exists("embeddings", name):
                raise ApiError(503, "the embedding was not written; retry")
        return _immutable_file(request, name, etag, "application/octet-stream")


class ShownView(ParticipantView):
    """What the browser displayed before an event's answer ({mask_rle?, sha256, latency_ms?,
    source: "local"}), for an event already posted; written once (docs/browser_decoder.md)."""

    # the shown mask's RLE grows with the image and the mask's outline (MAX_RLE_CHARS at most)
    max_body_bytes = MAX_RLE_CHARS + 64 * 1024

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Record the mask the browser showed before an event's answer (once)",
    )
    def post(self, request, assignment_id: int, client_event_id: str):
        participant = participant_or_error(request, write=True)
        require_consent(participant)
        study_kind(participant, "prompting")
        return Response(record_shown(participant, assignment_id, client_event_id, request.data))
