"""The API's payloads as DRF serializers: the contract `/api/v1/schema/` publishes.

Request serializers describe what each POST takes (field names, types, bounds); the views
check the same rules by hand and answer 400 `{"error": ..., "field": ...}` naming the field.
Response serializers describe the answers the views build. Every error, whatever its status,
has the shape of `ErrorSerializer`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from studies.core.api_input import MAX_EXACT_INT
from studies.core.exports import FORMATS
from studies.core.recorder import MAX_CLIENT_EVENT_ID
from studies.intervention.protocol import SUBSTRATES
from studies.prompting.protocol import ACTIONS, MODES


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="what is wrong, naming the field")
    field = serializers.CharField(required=False, help_text="the request field at fault")
    expected_seq = serializers.IntegerField(
        required=False, help_text="on a 409 for a seq out of order"
    )
    seq = serializers.IntegerField(required=False)


def errors(*statuses: int) -> dict:
    """Error answers of an endpoint, all `{"error": ...}`."""
    return {status: OpenApiResponse(ErrorSerializer, description="error") for status in statuses}


# every participant endpoint may answer these
PARTICIPANT_ERRORS = (400, 401, 403, 404, 409, 413, 503)


class EnvelopeSerializer(serializers.Serializer):
    client_event_id = serializers.CharField(
        max_length=MAX_CLIENT_EVENT_ID,
        help_text="the client's id of this action; a retry reuses it",
    )
    seq = serializers.IntegerField(min_value=0, max_value=MAX_EXACT_INT)
    client_ts = serializers.FloatField(required=False, allow_null=True)


class EventRequestSerializer(EnvelopeSerializer):
    action = serializers.ChoiceField(choices=list(ACTIONS))
    mode = serializers.ChoiceField(choices=list(MODES), required=False, allow_blank=True)
    x = serializers.FloatField(required=False, help_text="pixel column (add/remove)")
    y = serializers.FloatField(required=False, help_text="pixel row (add/remove)")


class RegionSerializer(serializers.Serializer):
    size = serializers.ListField(
        child=serializers.IntegerField(min_value=0), min_length=2, max_length=2
    )
    counts = serializers.CharField(
        help_text="COCO compressed RLE (column-major), or a list of run lengths",
        trim_whitespace=False,
    )


class TrialRequestSerializer(EnvelopeSerializer):
    operation = serializers.ChoiceField(choices=["delete", "insert"])
    region_rle = RegionSerializer()
    substrate = serializers.ChoiceField(choices=list(SUBSTRATES), required=False)


class ConsentRequestSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=50, help_text="the consent version shown")


class ConsentResponseSerializer(serializers.Serializer):
    consented = serializers.BooleanField()
    version = serializers.CharField()
    at = serializers.DateTimeField()


class SurveyRequestSerializer(serializers.Serializer):
    answers = serializers.DictField(
        child=serializers.JSONField(), help_text="up to 20 answers: strings, numbers or booleans"
    )


class SurveyResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    survey_answers = serializers.DictField(child=serializers.JSONField())


class FinishRequestSerializer(serializers.Serializer):
    client_event_id = serializers.CharField(max_length=MAX_CLIENT_EVENT_ID, required=False)
    client_ts = serializers.FloatField(required=False, allow_null=True)


class FinishResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    stop_reason = serializers.CharField(allow_null=True, allow_blank=True)


class AssignmentSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order = serializers.IntegerField()
    practice = serializers.BooleanField(
        help_text="the practice image before the study's images (listed first; not study data)"
    )
    status = serializers.CharField()
    image_url = serializers.URLField()
    ground_truth_url = serializers.URLField(allow_null=True)
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    stop_reason = serializers.CharField(allow_null=True)
    survey_answered = serializers.BooleanField()


class StudySummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField()
    show_score = serializers.BooleanField()
    show_ground_truth = serializers.BooleanField()


class MeResponseSerializer(serializers.Serializer):
    code = serializers.CharField()
    consented = serializers.BooleanField()
    consent_version = serializers.CharField()
    study = StudySummarySerializer()
    completion_code = serializers.CharField(allow_null=True, allow_blank=True)
    assignments = AssignmentSummarySerializer(many=True)


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(FORMATS))
    include_practice = serializers.BooleanField(
        required=False,
        help_text="tidy only: write the practice assignments too, with a practice column",
    )
    with_stats = serializers.BooleanField(
        required=False,
        help_text="pointprompt only: add stats.csv, the released PointPrompt feature table",
    )


class ExportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    study = serializers.IntegerField()
    format = serializers.CharField(allow_null=True, allow_blank=True)
    status = serializers.CharField()
    progress = serializers.FloatField()
    download_url = serializers.URLField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ExportListSerializer(serializers.Serializer):
    exports = ExportJobSerializer(many=True)
