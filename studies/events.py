"""Participants' prompt events: validate, run the protocol engine, predict, store once.

The click -> mask work runs as an `interactive` Celery task; nothing is stored until its answer
is back, and the event row, the assignment's state and `next_seq` are written in one
transaction, so a failure anywhere leaves nothing half-stored and the client's retry with the
same `client_event_id` is safe. The same `client_event_id` again returns the stored answer.
"""

from __future__ import annotations

import base64
import math
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .api_errors import ApiError
from .models import Assignment, Participant, PromptEvent
from .protocol import ACTIONS, MODES, Action, ProtocolError, State, apply_action, apply_score

MAX_CLIENT_EVENT_ID = 100


def _number(data: dict, name: str, *, required: bool) -> float | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"field {name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"field {name} must be a number", field=name)
    if not math.isfinite(value):
        raise ApiError(400, f"field {name} must be finite (got {value})", field=name)
    return float(value)


def parse_envelope(data: object) -> tuple[str, int]:
    """The fields every logged participant action carries: (client_event_id, seq), checked;
    ApiError(400) naming the field otherwise. Shared by prompt events and intervention trials."""
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
    return cid, seq


def parse_event(data: object, width: int, height: int) -> tuple[str, int, Action, float | None]:
    """Check an event payload; raise ApiError(400) naming the field otherwise."""
    cid, seq = parse_envelope(data)
    kind = data.get("action")
    if kind is None:
        raise ApiError(400, "field action is required", field="action")
    if kind not in ACTIONS:
        raise ApiError(
            400,
            f"field action: unknown action {kind!r}, expected one of {', '.join(ACTIONS)}",
            field="action",
        )
    client_ts = _number(data, "client_ts", required=False)
    mode = data.get("mode") or ""
    if kind in ("add", "remove"):
        if mode not in MODES:
            raise ApiError(400, f"field mode must be one of {', '.join(MODES)}", field="mode")
        x = _number(data, "x", required=True)
        y = _number(data, "y", required=True)
        if not (0 <= x < width):
            raise ApiError(400, f"field x={x} is outside the image (0 <= x < {width})", field="x")
        if not (0 <= y < height):
            raise ApiError(400, f"field y={y} is outside the image (0 <= y < {height})", field="y")
        return cid, seq, Action(kind, mode, x, y), client_ts
    if mode and mode not in MODES:
        raise ApiError(400, f"field mode must be one of {', '.join(MODES)}", field="mode")
    return cid, seq, Action(kind, mode), client_ts


def _same_request(event: PromptEvent, seq: int, action: Action) -> bool:
    return (
        event.seq == seq
        and event.action == action.kind
        and (
            action.kind not in ("add", "remove")
            or (event.mode == action.mode and event.x == action.x and event.y == action.y)
        )
    )


def _replay(event: PromptEvent, seq: int, action: Action) -> dict:
    if not _same_request(event, seq, action):
        raise ApiError(409, "client_event_id was already used for a different event", seq=event.seq)
    return event.response


def owned_assignment(participant: Participant, assignment_id: int) -> Assignment:
    assignment = (
        Assignment.objects.select_related("image", "participant__study__model")
        .filter(pk=assignment_id, participant=participant)
        .first()
    )
    if assignment is None:
        raise ApiError(404, f"assignment {assignment_id} not found for this participant")
    if not participant.consented:
        raise ApiError(403, "consent is required before any task")
    return assignment


def request_prediction(assignment: Assignment, green, red, previous_logits: bytes | None) -> dict:
    """Run the click -> mask task on the `interactive` queue and wait for its answer."""
    from workers.tasks import predict_mask  # the task module is light: no torch at import

    study = assignment.participant.study
    args = [
        study.model_id,
        assignment.image_id,
        [list(p) for p in green],
        [list(p) for p in red],
        study.option("mask_choice"),
        base64.b64encode(previous_logits).decode() if previous_logits else None,
        bool(study.option("chain_low_res_mask")),
    ]
    try:
        result = predict_mask.apply_async(args=args, queue="interactive")
        return result.get(timeout=settings.INTERACTIVE_TIMEOUT_S, propagate=True)
    except ApiError:
        raise
    except ValueError as exc:  # the backend refused these points: the input, not the service
        raise ApiError(400, f"the model cannot use these points: {exc}") from exc
    except Exception as exc:  # broker down, worker lost, timeout: nothing stored, client retries
        name = type(exc).__name__
        if (
            name
            in {"TimeoutError", "OperationalError", "ConnectionError", "ConnectionRefusedError"}
            or "Timeout" in name
        ):
            raise ApiError(
                503,
                f"the prediction service is unavailable ({name}); retry with the same client_event_id",
            ) from exc
        raise ApiError(
            503, f"the prediction failed ({name}: {exc}); retry with the same client_event_id"
        ) from exc


def submit_event(participant: Participant, assignment_id: int, data: object) -> dict:
    """Validate, apply and store one prompt event; return the answer (replayed on retries)."""
    started = time.perf_counter()
    assignment = owned_assignment(participant, assignment_id)
    image = assignment.image
    cid, seq, action, client_ts = parse_event(data, image.width, image.height)

    existing = assignment.events.filter(client_event_id=cid).first()
    if existing is not None:
        return _replay(existing, seq, action)
    if assignment.status == "finished":
        raise ApiError(409, "the image is already finished", expected_seq=assignment.next_seq)
    if seq != assignment.next_seq:
        raise ApiError(
            409,
            f"seq {seq} is out of order; expected {assignment.next_seq}",
            expected_seq=assignment.next_seq,
        )

    study = participant.study
    protocol = {**study.protocol}
    from .protocol import DEFAULT_PROTOCOL

    protocol = {**DEFAULT_PROTOCOL, **protocol}
    state = State.from_json(assignment.state)
    try:
        step = apply_action(state, action, protocol)
    except ProtocolError as exc:
        raise ApiError(409 if state.finished else 400, str(exc)) from exc

    prediction = None
    round_of_event = state.round
    timestep = None
    low_res = None
    after = step
    if step.prediction_due:
        previous = None
        if protocol["chain_low_res_mask"]:
            last = assignment.events.filter(timestep__isnull=False).order_by("-seq").first()
            if last is not None and last.round == state.round and last.low_res_logits:
                previous = bytes(last.low_res_logits)
        prediction = request_prediction(assignment, step.state.green, step.state.red, previous)
        timestep = step.state.timesteps
        after = apply_score(step.state, float(prediction["iou"]), protocol)
        if prediction.get("low_res_logits"):
            low_res = base64.b64decode(prediction["low_res_logits"])

    new_state = after.state
    finished = new_state.finished
    latency_ms = (time.perf_counter() - started) * 1000.0
    show_score = bool(protocol["show_score"])
    response = {
        "seq": seq,
        "client_event_id": cid,
        "action": action.kind,
        "green": [list(p) for p in step.state.green],
        "red": [list(p) for p in step.state.red],
        "round": round_of_event,
        "next_round": new_state.round,
        "timestep": timestep,
        "iou": prediction["iou"] if prediction and show_score else None,
        "predicted_iou": prediction["predicted_iou"] if prediction else None,
        "mask_index": prediction["mask_index"] if prediction else None,
        "mask_rle": prediction["mask_rle"] if prediction else None,
        "round_ended": after.round_ended,
        "finished": finished,
        "stop_reason": new_state.stop_reason or None,
        "stagnation": new_state.counter,
        "latency_ms": round(latency_ms, 3),
    }
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            if locked.next_seq != seq:
                raise _Raced()
            PromptEvent.objects.create(
                assignment=locked,
                seq=seq,
                client_event_id=cid,
                action=action.kind,
                mode=action.mode,
                x=action.x,
                y=action.y,
                client_ts=client_ts,
                server_ts=now,
                timestep=timestep,
                round=round_of_event,
                green=response["green"],
                red=response["red"],
                mask_rle=response["mask_rle"],
                iou=prediction["iou"] if prediction else None,
                predicted_iou=response["predicted_iou"],
                mask_index=response["mask_index"],
                model_id=prediction["model_id"] if prediction else "",
                latency_ms=latency_ms,
                stagnation=new_state.counter,
                round_ended=after.round_ended,
                finished=finished,
                stop_reason=new_state.stop_reason,
                low_res_logits=low_res,
                response=response,
            )
            locked.state = new_state.to_json()
            locked.next_seq = seq + 1
            if locked.started_at is None:
                locked.started_at = now
            locked.status = "finished" if finished else "active"
            if finished:
                locked.finished_at = now
                locked.stop_reason = new_state.stop_reason
            locked.save(
                update_fields=[
                    "state",
                    "next_seq",
                    "started_at",
                    "status",
                    "finished_at",
                    "stop_reason",
                ]
            )
    except (_Raced, IntegrityError):
        # A concurrent request with the same seq won: answer as it did, or say which seq is next.
        existing = assignment.events.filter(client_event_id=cid).first()
        if existing is not None:
            return _replay(existing, seq, action)
        expected = Assignment.objects.get(pk=assignment.pk).next_seq
        raise ApiError(
            409, f"seq {seq} is out of order; expected {expected}", expected_seq=expected
        ) from None
    return response


class _Raced(Exception):
    pass


def assignment_state(participant: Participant, assignment_id: int) -> dict:
    """What a client needs to resume: round, timestep count, point sets and the last result."""
    assignment = (
        Assignment.objects.select_related("image", "participant__study")
        .filter(pk=assignment_id, participant=participant)
        .first()
    )
    if assignment is None:
        raise ApiError(404, f"assignment {assignment_id} not found for this participant")
    state = State.from_json(assignment.state)
    last = assignment.events.filter(timestep__isnull=False).order_by("-seq").first()
    return {
        "id": assignment.pk,
        "status": assignment.status,
        "round": state.round,
        "timestep": state.timesteps,
        "next_seq": assignment.next_seq,
        "green": [list(p) for p in state.green],
        "red": [list(p) for p in state.red],
        "stagnation": state.counter,
        "stop_reason": assignment.stop_reason or None,
        "last": last.response if last is not None else None,
    }
