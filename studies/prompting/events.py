"""Participants' prompt events: the protocol engine decides, SAM (or the classical backend)
predicts, the recorder (`studies.core.recorder`) stores each event once.

A timestep's mask comes from the `predict_mask` task on the `interactive` queue; nothing is
stored until its answer is back, and a retry with the same `client_event_id` gets the stored
answer.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

from studies.core import design
from studies.core.api_errors import ApiError
from studies.core.dispatch import run_interactive
from studies.core.kinds import kind_of
from studies.core.recorder import ActionLog, Envelope, owned_assignment, parse_input, record
from studies.core.rle import decode_rle_field
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


def _number(data: dict, key: str, *, required: bool, name: str = "") -> float | None:
    value = data.get(key)
    name = name or key
    if value is None:
        if required:
            raise ApiError(400, f"field {name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"field {name} must be a number", field=name)
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ApiError(400, f"field {name} is a number too large", field=name) from None
    if not math.isfinite(number):
        raise ApiError(400, f"field {name} must be finite (got {value})", field=name)
    return number


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


SHOWN_FIELDS = ("mask_rle", "sha256", "latency_ms", "source")
SHOWN_SOURCES = ("local",)
MAX_CLIENT_LATENCY_MS = 3_600_000.0


@dataclass(frozen=True)
class Shown:
    """What the browser displayed before the server's answer (its local decoder's mask)."""

    sha256: str
    latency_ms: float | None
    mask: np.ndarray | None  # decoded from shown.mask_rle, when sent


def parse_shown(value: object, width: int, height: int) -> Shown | None:
    """The optional `shown` object of an event: {mask_rle (COCO RLE at the image size),
    sha256 (of the displayed mask, as `mask_sha256`), latency_ms, source: "local"}; 400 naming
    the field otherwise. A sent mask_rle must hash to the sent sha256."""
    from interventions.segmentation.browser import mask_sha256

    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "field shown must be an object", field="shown")
    unknown = set(value) - set(SHOWN_FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"field shown has unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(SHOWN_FIELDS)}",
            field="shown",
        )
    if value.get("source") not in SHOWN_SOURCES:
        raise ApiError(
            400,
            f"field shown.source must be one of {', '.join(SHOWN_SOURCES)}",
            field="shown.source",
        )
    sha = value.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or set(sha) - set("0123456789abcdef"):
        raise ApiError(
            400, "field shown.sha256 must be 64 lowercase hex digits", field="shown.sha256"
        )
    latency = _number(value, "latency_ms", required=False, name="shown.latency_ms")
    if latency is not None and not (0 <= latency <= MAX_CLIENT_LATENCY_MS):
        raise ApiError(
            400,
            f"field shown.latency_ms must be between 0 and {MAX_CLIENT_LATENCY_MS:.0f}",
            field="shown.latency_ms",
        )
    mask = None
    if value.get("mask_rle") is not None:
        mask = decode_rle_field(value["mask_rle"], width, height, "shown.mask_rle")
        if mask_sha256(mask) != sha:
            raise ApiError(
                400,
                "field shown.sha256 is not the sha256 of the mask in shown.mask_rle",
                field="shown.sha256",
            )
    return Shown(sha, latency, mask)


def shown_iou(shown: Shown, server_rle: dict | None) -> float | None:
    """IoU of the displayed mask vs the server's: 1.0 when the hashes agree, else computed from
    the sent RLE; None without a server mask or without a sent RLE."""
    from interventions.metrics import iou, rle_decode
    from interventions.segmentation.browser import mask_sha256

    if server_rle is None:
        return None
    server = rle_decode(server_rle)
    if mask_sha256(server) == shown.sha256:
        return 1.0
    if shown.mask is None:
        return None
    return float(iou(shown.mask, server))  # two empty masks hash alike: 1.0 above


def request_prediction(assignment: Assignment, green, red, previous_logits: bytes | None) -> dict:
    """Run the click -> mask task on the `interactive` queue and wait for its answer."""
    study = design.for_assignment(assignment)  # the arm's model and mask options
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
        action, client_ts = parse_action(data, image.width, image.height)
        shown = parse_shown(data.get("shown"), image.width, image.height)
        return action, client_ts, shown, parse_input(data)

    def same_request(self, row: PromptEvent, envelope: Envelope, request) -> bool:
        action = request[0]
        return (
            row.seq == envelope.seq
            and row.action == action.kind
            and (
                action.kind not in ("add", "remove")
                or (row.mode == action.mode and row.x == action.x and row.y == action.y)
            )
        )

    def compute(self, assignment: Assignment, envelope: Envelope, request) -> dict:
        action, _, shown, _ = request
        study = design.for_assignment(assignment)  # the arm's protocol
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
            "shown_iou": shown_iou(shown, prediction["mask_rle"] if prediction else None)
            if shown
            else None,
        }

    def store(self, locked, envelope, request, result, latency_ms, now) -> dict:
        action, client_ts, shown, source = request
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
        if shown is not None:
            response["shown_iou_vs_server"] = result["shown_iou"]
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
            shown_mask_sha256=shown.sha256 if shown else None,
            shown_iou_vs_server=result["shown_iou"],
            client_latency_ms=shown.latency_ms if shown else None,
            input=source,
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
    """What a client needs to resume: round, timestep count, point sets, the last result and
    the browser decoder's block (studies/prompting/decoder_files.py `decoder_block`)."""
    from studies.prompting.decoder_files import decoder_block

    study = design.for_assignment(assignment)
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
        "decoder": decoder_block(study, assignment.pk),
    }
    if not study.option("show_score") and answer["last"] is not None:
        answer["last"] = {**answer["last"], "iou": None}
    if design.has_design(participant.study):
        answer["arm"] = design.arm_code(participant.study, assignment.arm)
    if design.method(participant.study) == "within":
        # the arm of this image, as the page shows it (never its name): its options
        from studies.prompting.views import client_options

        answer["config"] = client_options(study)
    return answer


def record_shown(participant: Participant, assignment_id: int, cid: str, data: object) -> dict:
    """What the browser displayed for an event already stored, sent after the event's answer
    (the page posts the event at once and decodes its preview meanwhile, so the record never
    waits for the preview). Written once: the same sha256 again replays the answer, another
    one is a 409; the server's mask, IoU and state are never touched."""
    assignment = owned_assignment(participant, assignment_id)
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object: the shown mask's fields")
    event = assignment.events.filter(client_event_id=cid).first()
    if event is None:
        raise ApiError(
            404,
            f"no event with client_event_id {cid!r} in assignment {assignment_id}: "
            "post the event first",
        )
    image = assignment.image
    shown = parse_shown(data, image.width, image.height)
    iou_value = shown_iou(shown, event.mask_rle)
    updated = PromptEvent.objects.filter(pk=event.pk, shown_mask_sha256__isnull=True).update(
        shown_mask_sha256=shown.sha256,
        shown_iou_vs_server=iou_value,
        client_latency_ms=shown.latency_ms,
    )
    if not updated:
        event.refresh_from_db(fields=["shown_mask_sha256", "shown_iou_vs_server"])
        if event.shown_mask_sha256 != shown.sha256:
            raise ApiError(409, f"event seq {event.seq} already records another shown mask")
        iou_value = event.shown_iou_vs_server
    return {
        "client_event_id": cid,
        "seq": event.seq,
        "shown_mask_sha256": shown.sha256,
        "shown_iou_vs_server": iou_value,
    }
