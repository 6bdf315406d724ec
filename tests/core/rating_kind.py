"""A third study kind, written the way a lab would add one: participants rate each image on a
scale; each rating is a logged action. Everything it needs is in this module plus one line in
`studies.core.kinds.KIND_MODULES` (the test adds that line at run time with `register`)."""

from __future__ import annotations

from django.apps import apps
from django.db import connection, models
from django.http import HttpResponse
from django.utils import timezone

from studies.core.api_errors import ApiError
from studies.core.exports.tables import write_csv
from studies.core.kinds import Option, StudyKind, register, unregister
from studies.core.recorder import ActionLog, record
from studies.models import Assignment

Rating = None  # the log model: defined by install(), removed by uninstall()


def _define_rating():
    class Rating(models.Model):
        assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="ratings")
        seq = models.PositiveIntegerField()
        client_event_id = models.CharField(max_length=100)
        value = models.IntegerField()
        server_ts = models.DateTimeField()
        response = models.JSONField(default=dict)

        class Meta:
            app_label = "studies"
            db_table = "test_rating"
            constraints = [
                models.UniqueConstraint(fields=["assignment", "seq"], name="test_unique_rating_seq")
            ]

    return Rating


class RatingLog(ActionLog):
    related_name = "ratings"
    kind_label = "rating"

    def parse(self, data, assignment, envelope):
        scale = assignment.participant.study.option("scale")
        value = data.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= scale:
            raise ApiError(400, f"field value must be an integer 1..{scale}", field="value")
        return value

    def same_request(self, row, envelope, value) -> bool:
        return row.seq == envelope.seq and row.value == value

    def compute(self, assignment, envelope, value):
        return None  # nothing to predict: a rating is the whole action

    def store(self, locked, envelope, value, result, latency_ms, now) -> dict:
        response = {"seq": envelope.seq, "client_event_id": envelope.cid, "value": value}
        Rating.objects.create(
            assignment=locked,
            seq=envelope.seq,
            client_event_id=envelope.cid,
            value=value,
            server_ts=now,
            response=response,
        )
        locked.status = "finished"
        locked.finished_at = now
        return response


def tidy_tables(study, archive, include_practice: bool = False) -> dict:
    rows = Rating.objects.filter(assignment__participant__study=study).order_by("pk")
    if not include_practice:
        rows = rows.filter(assignment__practice=False)
    n = write_csv(
        archive,
        "ratings.csv",
        ("assignment_id", "seq", "value"),
        rows.values("assignment_id", "seq", "value"),
    )
    return {"ratings": n}


def finish(participant, assignment, body) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(
        status="finished", finished_at=timezone.now(), stop_reason="finished"
    )


RATING = StudyKind(
    name="rating",
    label="Rating",
    options={"scale": Option(5, "Points on the rating scale.", minimum=2)},
    model_kinds=("classical",),
    participant_page=lambda request, study, participant: HttpResponse(
        f"rate {participant.assignments.count()} images from 1 to {study.option('scale')}"
    ),
    action_route="ratings",
    submit=lambda participant, assignment_id, data: record(
        RatingLog(), participant, assignment_id, data
    ),
    assignment_state=lambda participant, a: {
        "id": a.pk,
        "status": a.status,
        "next_seq": a.next_seq,
    },
    finish=finish,
    tidy_tables=tidy_tables,
    instructions_template="prompting/_howto.html",
)


def install() -> StudyKind:
    """What a real kind gets from its migration and its registry line: its table and the
    kind. (The test defines the model here, not at import, so that no other test sees it.)"""
    global Rating
    Rating = _define_rating()
    with connection.schema_editor() as editor:
        editor.create_model(Rating)
    return register(RATING)


def uninstall() -> None:
    global Rating
    unregister("rating")
    with connection.schema_editor() as editor:
        editor.delete_model(Rating)
    apps.all_models["studies"].pop("rating", None)
    apps.clear_cache()
    Rating = None
