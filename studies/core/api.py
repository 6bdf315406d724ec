"""The participants' JSON API (docs/design.md "API"). Thin views: parse, call a service, answer.

Participants authenticate with `Authorization: Bearer <token>` or the session their join link
opened (then the CSRF token is required, as for any cookie-authenticated write).
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError
from django.http import FileResponse, Http404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.authentication import CSRFCheck
from rest_framework.response import Response
from rest_framework.views import APIView

from studies.core import design
from studies.core.api_errors import ApiError
from studies.core.api_input import DEFAULT_MAX_BODY_BYTES, check_body_size
from studies.core.api_schema import (
    PARTICIPANT_ERRORS,
    ConsentRequestSerializer,
    ConsentResponseSerializer,
    EventRequestSerializer,
    FinishRequestSerializer,
    FinishResponseSerializer,
    MeResponseSerializer,
    SurveyRequestSerializer,
    SurveyResponseSerializer,
    errors,
)
from studies.core.closing import closed_error
from studies.core.enrolment import EnrolmentRefused, record_consent
from studies.core.kinds import ProtocolError, kind_for_route, require_kind
from studies.core.participant_auth import request_participant
from studies.core.recorder import owned_assignment
from studies.core.rle import MAX_RLE_CHARS
from studies.models import Assignment, Participant


def participant_or_error(request, *, write: bool = False, require_open: bool = True) -> Participant:
    """The participant of the request (401 otherwise); a write needs CSRF (session) and an
    open study (409, `studies.core.closing`). `require_open=False`: the caller checks the
    study itself (the recorder, which still answers retries of actions stored before closing)."""
    participant = request_participant(request._request if hasattr(request, "_request") else request)
    if participant is None:
        raise ApiError(
            401,
            "not signed in as a participant: open your join link or send Authorization: Bearer <token>",
        )
    bearer = request.META.get("HTTP_AUTHORIZATION", "").startswith("Bearer ")
    if write and not bearer:
        check = CSRFCheck(lambda req: None)
        django_request = request._request
        check.process_request(django_request)
        reason = check.process_view(django_request, None, (), {})
        if reason:
            raise ApiError(403, f"CSRF check failed: {reason}")
    if participant.study.status != "open" and write and require_open:
        raise closed_error(participant, participant.study)
    return participant


def study_kind(participant: Participant, name: str):
    """The participant's study kind when it is `name`, else 400 saying what the study is."""
    try:
        return require_kind(participant.study, name)
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None


def require_consent(participant: Participant) -> None:
    if not participant.consented:
        raise ApiError(403, "consent is required before any task")


class ParticipantView(APIView):
    """Base: participants are not Django users; errors become JSON with a status."""

    authentication_classes: list = []
    permission_classes: list = []
    # The largest body this endpoint reads (bytes); never above DATA_UPLOAD_MAX_MEMORY_SIZE.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def initial(self, request, *args, **kwargs):
        check_body_size(request, self.max_body_bytes)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, ApiError):
            return Response({"error": exc.message, **exc.extra}, status=exc.status)
        if isinstance(exc, OperationalError | InterfaceError):
            # The database connection dropped mid-request: the transaction rolled back, nothing
            # is stored, and the client's retry with the same client_event_id is safe.
            return Response(
                {
                    "error": f"the database is unavailable ({type(exc).__name__}); retry with the same client_event_id"
                },
                status=503,
            )
        return super().handle_exception(exc)


def assignment_summary(request, assignment: Assignment) -> dict:
    study = design.for_assignment(assignment)  # the arm's options (no design: the study)
    image = assignment.image
    gt_url = None
    if study.option("show_ground_truth"):
        gt_url = request.build_absolute_uri(
            reverse("api-assignment-ground-truth", args=[assignment.pk])
        )
    return {
        "id": assignment.pk,
        "order": assignment.order,
        "practice": assignment.practice,
        "status": assignment.status,
        "image_url": request.build_absolute_uri(
            reverse("api-assignment-image", args=[assignment.pk])
        ),
        "ground_truth_url": gt_url,
        "width": image.width,
        "height": image.height,
        "stop_reason": assignment.stop_reason or None,
        "survey_answered": assignment.survey_answers is not None,
    }


class PreparationView(ParticipantView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="Progress of the study's per-image precomputation (what a cold start waits for)",
    )
    def get(self, request):
        participant = participant_or_error(request)
        job = participant.study.jobs.filter(kind="precompute").order_by("-pk").first()
        if job is None:
            return Response({"status": "none", "done": 0, "total": 0})
        return Response({"status": job.status, "done": job.done, "total": job.total})


class MeView(ParticipantView):
    @extend_schema(
        responses={200: MeResponseSerializer, **errors(*PARTICIPANT_ERRORS)},
        summary="The participant, consent and assignments",
    )
    def get(self, request):
        participant = participant_or_error(request)
        study = design.for_participant(participant)
        assignments = participant.assignments.select_related(
            "image", "participant__study"
        ).order_by("-practice", "order")  # the practice image first
        return Response(
            {
                "code": participant.code,
                "consented": participant.consented,
                "consent_version": study.consent_version,
                "study": {
                    "id": study.pk,
                    "kind": study.kind,
                    "title": study.title,
                    "status": study.status,
                    "show_score": bool(study.option("show_score")),
                    "show_ground_truth": bool(study.option("show_ground_truth")),
                },
                "completion_code": participant.completion_code
                if participant.completed_at
                else None,
                "assignments": [assignment_summary(request, a) for a in assignments],
            }
        )


class ConsentView(ParticipantView):
    @extend_schema(
        request=ConsentRequestSerializer,
        responses={200: ConsentResponseSerializer, **errors(*PARTICIPANT_ERRORS)},
        summary="Give consent {version}",
    )
    def post(self, request):
        participant = participant_or_error(request, write=True)
        version = request.data.get("version") if isinstance(request.data, dict) else None
        if not isinstance(version, str) or not version:
            raise ApiError(
                400, "field version is required (the consent version shown)", field="version"
            )
        if version != participant.study.consent_version:
            raise ApiError(
                400,
                f"field version {version!r} is not the current consent version {participant.study.consent_version!r}",
                field="version",
            )
        if not participant.consented:
            try:
                participant = record_consent(participant, version)
            except EnrolmentRefused as exc:  # every arm of the design at its target
                raise ApiError(exc.status, str(exc)) from None
        return Response(
            {
                "consented": True,
                "version": participant.consent_version,
                "at": participant.consented_at,
            }
        )


def _owned(participant: Participant, assignment_id: int) -> Assignment:
    return owned_assignment(participant, assignment_id, consent=False)


class AssignmentView(ParticipantView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="State to resume an assignment (its fields depend on the study kind)",
    )
    def get(self, request, assignment_id: int):
        participant = participant_or_error(request)
        require_consent(participant)
        assignment = _owned(participant, assignment_id)
        return Response(participant.study.kind_spec.assignment_state(participant, assignment))


class ActionsView(ParticipantView):
    """POST one logged action of the study's kind (events of prompting studies, trials of
    intervention studies, ...); the kind's recorder service stores it once."""

    route = ""  # fixed by a subclass, else taken from the URL (a kind added later)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Post one logged action of another study kind",
    )
    def post(self, request, assignment_id: int, route: str = ""):
        route = self.route or route
        owner = kind_for_route(route)
        if owner is None:
            raise ApiError(404, f"no study kind takes {route!r}")
        # the recorder checks the study is open (after answering a retry of a stored action)
        participant = participant_or_error(request, write=True, require_open=False)
        require_consent(participant)
        kind = participant.study.kind_spec
        if kind.action_route != route:
            article = "an" if owner.name[:1] in "aeiou" else "a"
            raise ApiError(
                400,
                f"this study is not {article} {owner.name} study: post {kind.action_route} instead",
            )
        return Response(kind.submit(participant, assignment_id, request.data))


class EventsView(ActionsView):
    route = "events"
    # an event may carry the mask the browser showed (`shown.mask_rle`, MAX_RLE_CHARS at most)
    max_body_bytes = MAX_RLE_CHARS + 64 * 1024

    @extend_schema(
        request=EventRequestSerializer,
        responses={200: OpenApiTypes.OBJECT, **errors(*PARTICIPANT_ERRORS)},
        summary="Post one prompt event of a prompting study",
    )
    def post(self, request, assignment_id: int, route: str = ""):
        return super().post(request, assignment_id, route)


class SurveyView(ParticipantView):
    @extend_schema(
        request=SurveyRequestSerializer,
        responses={200: SurveyResponseSerializer, **errors(*PARTICIPANT_ERRORS)},
        summary="Answer the survey {answers} (once)",
    )
    def post(self, request, assignment_id: int):
        participant = participant_or_error(request, write=True)
        require_consent(participant)
        assignment = _owned(participant, assignment_id)
        answers = request.data.get("answers") if isinstance(request.data, dict) else None
        if not isinstance(answers, dict) or not answers:
            raise ApiError(
                400,
                'field answers is required (an object, e.g. {"suboptimal_gt": "yes"})',
                field="answers",
            )
        check_survey_answers(answers)
        if assignment.status != "finished":
            raise ApiError(409, "finish the image before answering its survey")
        if assignment.survey_answers is not None:
            # answers are written once: a retry of the same answers is fine, a rewrite is not
            if assignment.survey_answers != answers:
                raise ApiError(409, "this image's survey is already answered")
            return Response({"id": assignment.pk, "survey_answers": assignment.survey_answers})
        updated = Assignment.objects.filter(pk=assignment.pk, survey_answers__isnull=True).update(
            survey_answers=answers
        )
        if not updated:  # a concurrent answer won
            raise ApiError(409, "this image's survey is already answered")
        _complete_if_done(participant)
        return Response({"id": assignment.pk, "survey_answers": answers})


class FinishView(ParticipantView):
    @extend_schema(
        request=FinishRequestSerializer,
        responses={200: FinishResponseSerializer, **errors(*PARTICIPANT_ERRORS)},
        summary="Finish the image",
    )
    def post(self, request, assignment_id: int):
        participant = participant_or_error(request, write=True)
        require_consent(participant)
        assignment = _owned(participant, assignment_id)
        if assignment.status == "finished":
            return Response(
                {"id": assignment.pk, "status": "finished", "stop_reason": assignment.stop_reason}
            )
        body = request.data if isinstance(request.data, dict) else {}
        participant.study.kind_spec.finish(participant, assignment, body)
        assignment.refresh_from_db()
        return Response(
            {
                "id": assignment.pk,
                "status": assignment.status,
                "stop_reason": assignment.stop_reason,
            }
        )


MAX_SURVEY_ANSWERS = 20
MAX_SURVEY_KEY = 100
MAX_SURVEY_TEXT = 2000


def check_survey_answers(answers: dict) -> None:
    """At most 20 answers, keys up to 100 characters, scalar values, texts up to 2000
    characters; ApiError(400) naming the answer otherwise."""
    if len(answers) > MAX_SURVEY_ANSWERS:
        raise ApiError(
            400, f"field answers holds more than {MAX_SURVEY_ANSWERS} answers", field="answers"
        )
    for key, value in answers.items():
        if not key.strip() or len(key) > MAX_SURVEY_KEY:
            raise ApiError(
                400,
                f"field answers: each key is 1 to {MAX_SURVEY_KEY} characters",
                field="answers",
            )
        if not isinstance(value, str | bool | int | float) or (
            isinstance(value, float) and value != value
        ):
            raise ApiError(
                400, f"field answers.{key} must be a string, number or boolean", field="answers"
            )
        if isinstance(value, str) and len(value) > MAX_SURVEY_TEXT:
            raise ApiError(
                400,
                f"field answers.{key} is longer than {MAX_SURVEY_TEXT} characters",
                field="answers",
            )


def _complete_if_done(participant: Participant) -> None:
    remaining = (
        participant.assignments.exclude(status="finished").exists()
        or participant.assignments.filter(survey_answers__isnull=True).exists()
    )
    if not remaining and participant.completed_at is None:
        participant.completed_at = timezone.now()
        participant.save(update_fields=["completed_at"])


class AssignmentImageView(ParticipantView):
    """The image file of an assignment (participants never get a guessable media URL)."""

    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY, **errors(*PARTICIPANT_ERRORS)}
    )
    def get(self, request, assignment_id: int):
        participant = participant_or_error(request)
        assignment = _owned(participant, assignment_id)
        return FileResponse(assignment.image.image.open("rb"), content_type="image/png")


class AssignmentGroundTruthView(ParticipantView):
    """The ground-truth mask, only when the study shows it."""

    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY, **errors(*PARTICIPANT_ERRORS)}
    )
    def get(self, request, assignment_id: int):
        participant = participant_or_error(request)
        assignment = _owned(participant, assignment_id)
        if not participant.study.option("show_ground_truth"):
            raise Http404("ground truth is not shown in this study")
        return FileResponse(assignment.image.mask.open("rb"), content_type="image/png")
