"""The recorder of logged participant actions: one pipeline for every study kind.

A kind describes its action log (`ActionLog`): how to check a payload, which rows hold the log,
when a stored row answers a retry, what to compute (on the `interactive` queue) and how to
write the row. The recorder does the rest, the same way for all kinds:

1. the assignment must be the participant's (404) and consent given (403);
2. the payload is checked (400 naming the field, nothing stored);
3. a `client_event_id` already stored answers with the stored response (a different payload
   under the same id is a 409): retries are safe, even after the study closed; anything else
   sent to a study that is not open is a 409;
4. a finished image or a `seq` other than the next is a 409 carrying `expected_seq`;
5. the computation runs; nothing is stored until its answer is back;
6. the row, the assignment's state and `next_seq` are written in one transaction, only while
   the study is open (`studies.core.closing`: a study closed meanwhile answers 409, nothing
   stored); a concurrent request that won the race is answered as it was, or with the
   expected seq.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from studies.core import design
from studies.core.api_errors import ApiError
from studies.core.closing import closed_error, lock_open
from studies.models import Assignment, Participant

MAX_CLIENT_EVENT_ID = 100


@dataclass
class Envelope:
    """The fields every logged action carries."""

    cid: str
    seq: int


class ActionLog:
    """What a study kind tells the recorder about its log (override every method)."""

    related_name = "events"  # Assignment.<related_name> holds the rows
    kind_label = "event"

    def parse(self, data: dict, assignment: Assignment, envelope: Envelope) -> Any:
        """The checked request (ApiError 400 naming the field otherwise)."""
        raise NotImplementedError

    def same_request(self, row, envelope: Envelope, request: Any) -> bool:
        raise NotImplementedError

    def compute(self, assignment: Assignment, envelope: Envelope, request: Any) -> Any:
        """The work before anything is stored (may call `dispatch.run_interactive`)."""
        raise NotImplementedError

    def store(
        self, locked: Assignment, envelope: Envelope, request: Any, result: Any, latency_ms, now
    ) -> dict:
        """Create the row and update `locked` (its `next_seq` is set by the recorder); return
        the response to send and to replay."""
        raise NotImplementedError

    def public(self, study, response: dict) -> dict:
        """What the participant sees of a stored response."""
        return response


def parse_envelope(data: object) -> Envelope:
    """(client_event_id, seq), checked; ApiError(400) naming the field otherwise."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    cid = data.get("client_event_id")
    if not isinstance(cid, str) or not cid.strip():
        raise ApiError(
            400, "field client_event_id is required (a non-empty string)", field="client_event_id"
        )
    if len(cid) > MAX_CLIENT_EVENT_ID:
        raise ApiError(
            400,
            f"field client_event_id is longer than {MAX_CLIENT_EVENT_ID}",
            field="client_event_id",
        )
    seq = data.get("seq")
    if seq is None:
        raise ApiError(400, "field seq is required", field="seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ApiError(400, "field seq must be a non-negative integer", field="seq")
    return Envelope(cid, seq)


POINT_INPUTS = ("pointer", "keyboard")


def parse_input(data: dict, allowed: tuple[str, ...] = POINT_INPUTS) -> str:
    """The optional `input` field of a logged action: which input made it (mouse, touch and
    pen are "pointer"; the keyboard cursor is "keyboard"); "" when absent, 400 naming the
    field for anything else."""
    value = data.get("input")
    if value is None:
        return ""
    if value not in allowed:
        raise ApiError(400, f"field input must be one of {', '.join(allowed)}", field="input")
    return value


def owned_assignment(participant: Participant, assignment_id: int, consent: bool = True):
    """The participant's assignment (404 for anyone else's); 403 before consent."""
    assignment = (
        Assignment.objects.select_related("image", "participant__study__model")
        .filter(pk=assignment_id, participant=participant)
        .first()
    )
    if assignment is None:
        raise ApiError(404, f"assignment {assignment_id} not found for this participant")
    if consent and not participant.consented:
        raise ApiError(403, "consent is required before any task")
    return assignment


class _Raced(Exception):
    pass


def _out_of_order(seq: int, expected: int) -> ApiError:
    return ApiError(409, f"seq {seq} is out of order; expected {expected}", expected_seq=expected)


def record(action_log: ActionLog, participant: Participant, assignment_id: int, data) -> dict:
    """Check, compute and store one logged action; return its answer (replayed on retries)."""
    started = time.perf_counter()
    assignment = owned_assignment(participant, assignment_id)
    study = design.for_assignment(assignment)  # the arm's protocol (no design: the study)
    envelope = parse_envelope(data)
    request = action_log.parse(data, assignment, envelope)
    rows = getattr(assignment, action_log.related_name)

    def replay(row) -> dict:
        if not action_log.same_request(row, envelope, request):
            raise ApiError(
                409,
                f"client_event_id was already used for a different {action_log.kind_label}",
                seq=row.seq,
            )
        return action_log.public(study, row.response)

    existing = rows.filter(client_event_id=envelope.cid).first()
    if existing is not None:
        return replay(existing)
    if study.status != "open":  # (checked again, under a lock, where the row is written)
        raise closed_error(participant, study)
    if assignment.status == "finished":
        raise ApiError(409, "the image is already finished", expected_seq=assignment.next_seq)
    if envelope.seq != assignment.next_seq:
        raise _out_of_order(envelope.seq, assignment.next_seq)

    result = action_log.compute(assignment, envelope, request)
    try:
        with transaction.atomic():
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            if locked.next_seq != envelope.seq or locked.status == "finished":
                raise _Raced()
            # closing is a line: a study closed while this action was computed refuses it (409)
            lock_open(participant)
            now = timezone.now()  # after the line check: never later than closed_at
            latency_ms = (time.perf_counter() - started) * 1000.0
            response = action_log.store(locked, envelope, request, result, latency_ms, now)
            locked.next_seq = envelope.seq + 1
            if locked.started_at is None:
                locked.started_at = now
            locked.save()
    except (_Raced, IntegrityError):
        # A concurrent request with the same seq won: answer as it did, or say which seq is next.
        existing = rows.filter(client_event_id=envelope.cid).first()
        if existing is not None:
            return replay(existing)
        raise _out_of_order(
            envelope.seq, Assignment.objects.get(pk=assignment.pk).next_seq
        ) from None
    return action_log.public(study, response)
