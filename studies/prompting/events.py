"""Participants' prompt events: the protocol engine decides, SAM (or the classical backend)
predicts, the recorder (`studies.core.recorder`) stores each event once.

A timestep's mask comes from the `predict_mask` task on the `interactive` queue; nothing is
stored until its answer is back, and a retry with the same `client_event_id` gets the stored
answer.
"""

from __future__ import annotations

import base64
import math

from studies.core.api_errors import ApiError
from studies.core.dispatch import run_interactive
from studies.core.kinds import kind_of
from studies.core.recorder import ActionLog, Envelope, record
from studies.models import Assignment, Participant, PromptEvent
from studies.prompting.protocol import (
    ACTIONS,
    MODES,
    Action,
    ProtocolError,
    State,
    apply_action,
    apply_score,
)


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


def parse_action(data: dict, width: int, height: int) -> tuple[Action, float | None]:
    """Check an event payload past its envelope; raise ApiError(400) naming the field otherwise."""
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
        return Action(kind, mode, x, y), client_ts
    if mode and mode not in MODES:
        raise ApiError(400, f"field mode must be one of {', '.join(MODES)}", field="mode")
    return Action(kind, mode), client_ts


def request_prediction(assignment: Assignment, green, red, previous_logits: bytes | None) -> dict:
    """Run the click -> mask task on the `interactive` queue and wait for its answer."""
    study = assignment.participant.study
    args = [
        study.model.pk,
        assignment.image_id,
        [list(p) for p in green],
        [list(p) for p in red],
        study.option("mask_choice"),
        base64.b64encode(previous_logits).decode() if previous_logits else None,
        bool(study.option("chain_low_res_mask")),
    ]
    return run_interactive("workers.tasks.predict_mask", args)


class PromptLog(ActionLog):
    """Prompt events as the recorder sees them: the protocol engine decides whether the event
    is a timestep; a timestep's mask comes from `predict_mask` on the `interactive` queue."""

    related_name = "events"
    kind_label = "event"

    def parse(self, data: dict, assignment: Assignment, envelope: Envelope):
        image = assignment.image
        return parse_action(data, image.width, image.height)

    def same_request(self, row: PromptEvent, envelope: Envelope, request) -> bool:
        action, _ = request
        return (
            row.seq == envelope.seq
            and row.action == action.kind
            and (
                action.kind not in ("add", "remove")
                or (row.mode == action.mode and row.x == action.x and row.y == action.y)
            )
        )

    def compute(self, assignment: Assignment, envelope: Envelope, request) -> dict:
        action, _ = request
        study = assignment.participant.study
        protocol = {**kind_of(study).defaults, **study.protocol}
        state = State.from_json(assignment.state)
        try:
            step = apply_action(state, action, protocol)
        except ProtocolError as exc:
            raise ApiError(409 if state.finished else 400, str(exc)) from exc
        prediction = None
        after = step
        if step.prediction_due:
            previous = None
            if protocol["chain_low_res_mask"]:
                last = assignment.events.filter(timestep__isnull=False).order_by("-seq").first()
                if last is not None and last.round == state.round and last.low_res_logits:
                    previous = bytes(last.low_res_logits)
            prediction = request_prediction(assignment, step.state.green, step.state.red, previous)
            after = apply_score(step.state, float(prediction["iou"]), protocol)
        return {
            "show_score": bool(protocol["show_score"]),
            "round": state.round,
            "step": step,
            "after": after,
            "prediction": prediction,
        }

    def store(self, locked, envelope, request, result, latency_ms, now) -> dict:
        action, client_ts = request
        step, after, prediction = result["step"], result["after"], result["prediction"]
        new_state = after.state
        timestep = step.state.timesteps if prediction else None
        low_res = None
        if prediction and prediction.get("low_res_logits"):
            low_res = base64.b64decode(prediction["low_res_logits"])
        response = {
            "seq": envelope.seq,
            "client_event_id": envelope.cid,
            "action": action.kind,
            "green": [list(p) for p in step.state.green],
            "red": [list(p) for p in step.state.red],
            "round": result["round"],
            "next_round": new_state.round,
            "timestep": timestep,
            "iou": prediction["iou"] if prediction and result["show_score"] else None,
            "predicted_iou": prediction["predicted_iou"] if prediction else None,
            "mask_index": prediction["mask_index"] if prediction else None,
            "mask_rle": prediction["mask_rle"] if prediction else None,
            "round_ended": after.round_ended,
            "finished": new_state.finished,
            "stop_reason": new_state.stop_reason or None,
            "stagnation": new_state.counter,
            "undo": len(new_state.history),  # steps undo / redo can take now
            "redo": len(new_state.future),
            "latency_ms": round(latency_ms, 3),
        }
        PromptEvent.objects.create(
            assignment=locked,
            seq=envelope.seq,
            client_event_id=envelope.cid,
            action=action.kind,
            mode=action.mode,
            x=action.x,
            y=action.y,
            client_ts=client_ts,
            server_ts=now,
            timestep=timestep,
            round=result["round"],
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
            finished=new_state.finished,
            stop_reason=new_state.stop_reason,
            low_res_logits=low_res,
            response=response,
        )
        locked.state = new_state.to_json()
        locked.status = "finished" if new_state.finished else "active"
        if new_state.finished:
            locked.finished_at = now
            locked.stop_reason = new_state.stop_reason
        return response


PROMPT_LOG = PromptLog()


def submit_event(participant: Participant, assignment_id: int, data: object) -> dict:
    """Validate, apply and store one prompt event; return the answer (replayed on retries)."""
    return record(PROMPT_LOG, participant, assignment_id, data)


def assignment_state(participant: Participant, assignment: Assignment) -> dict:
    """What a client needs to resume: round, timestep count, point sets and the last result."""
    state = State.from_json(assignment.state)
    last = assignment.events.filter(timestep__isnull=False).order_by("-seq").first()
    answer = {
        "id": assignment.pk,
        "status": assignment.status,
        "round": state.round,
        "timestep": state.timesteps,
        "next_seq": assignment.next_seq,
        "green": [list(p) for p in state.green],
        "red": [list(p) for p in state.red],
        "stagnation": state.counter,
        "undo": len(state.history),
        "redo": len(state.future),
        "stop_reason": assignment.stop_reason or None,
        "last": last.response if last is not None else None,
    }
    if not participant.study.option("show_score") and answer["last"] is not None:
        answer["last"] = {**answer["last"], "iou": None}
    return answer
