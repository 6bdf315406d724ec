"""Participants' intervention trials: validate, predict, store once (docs/design.md "Intervention
protocol", `POST /api/v1/assignments/<id>/trials`).

A trial is one apply: the region (COCO RLE at the image's size) is deleted (replaced by the
study's substrate) or inserted (the image starts as substrate, the region is revealed) and the
classifier runs on the result as an `interactive` Celery task. Nothing is stored until its
answer is back; the trial row and the assignment's `next_seq` are written in one transaction,
so a failure leaves nothing half-stored and the client's retry with the same `client_event_id`
gets the stored answer. Bad input answers 400 naming the field and stores nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from studies.core import design
from studies.core.api_errors import ApiError
from studies.core.dispatch import run_interactive
from studies.core.recorder import ActionLog, Envelope, owned_assignment, parse_input, record
from studies.core.rle import decode_rle_field
from studies.intervention.protocol import OVERLAYS, SUBSTRATES
from studies.models import Assignment, InterventionTrial, Participant

OPERATIONS = ("delete", "insert")
TRIAL_INPUTS = ("pointer", "keyboard", "mixed")


@dataclass(frozen=True)
class TrialRequest:
    """A checked trial payload (past its envelope)."""

    operation: str
    region_rle: dict
    substrate: str
    client_ts: float | None
    input: str = ""  # "pointer", "keyboard", "mixed" or "" (not said)


def _region(value: object, width: int, height: int) -> tuple[dict, int]:
    """The region as a normalised COCO RLE dict and its pixel count; 400 naming region_rle."""
    from interventions.metrics import rle_encode  # numpy + pycocotools, no torch

    mask = decode_rle_field(value, width, height, "region_rle")
    area = int(mask.sum())
    if area == 0:
        raise ApiError(
            400, "field region_rle is empty: paint a region before applying", field="region_rle"
        )
    return rle_encode(mask), area


def parse_trial(data: dict, width: int, height: int, study_substrate: str) -> TrialRequest:
    """Check a trial payload past its envelope; raise ApiError(400) naming the field otherwise."""
    operation = data.get("operation")
    if operation is None:
        raise ApiError(400, "field operation is required (delete or insert)", field="operation")
    if operation not in OPERATIONS:
        raise ApiError(
            400,
            f"field operation: unknown operation {operation!r}, expected delete or insert",
            field="operation",
        )
    substrate = data.get("substrate", study_substrate)
    if substrate not in SUBSTRATES:
        raise ApiError(
            400,
            f"field substrate: unknown substrate {substrate!r}, expected one of {', '.join(SUBSTRATES)}",
            field="substrate",
        )
    if substrate != study_substrate:
        raise ApiError(
            400,
            f"field substrate {substrate!r}: this study uses the substrate {study_substrate!r}",
            field="substrate",
        )
    client_ts = data.get("client_ts")
    if client_ts is not None:
        if isinstance(client_ts, bool) or not isinstance(client_ts, int | float):
            raise ApiError(400, "field client_ts must be a number", field="client_ts")
        try:
            client_ts = float(client_ts)
        except OverflowError:  # an integer with hundreds of digits
            raise ApiError(
                400, "field client_ts is a number too large", field="client_ts"
            ) from None
        if not math.isfinite(client_ts):
            raise ApiError(
                400, f"field client_ts must be finite (got {client_ts})", field="client_ts"
            )
    source = parse_input(data, TRIAL_INPUTS)
    region, _ = _region(data.get("region_rle"), width, height)
    return TrialRequest(operation, region, substrate, client_ts, source)


def public_response(study, response: dict) -> dict:
    """What a participant sees of a stored trial answer (top-5 only when the study shows it)."""
    if study.option("show_top5"):
        return response
    return {**response, "top5_before": None, "top5_after": None}


def request_intervention(assignment: Assignment, req: TrialRequest) -> dict:
    """Run the trial's prediction on the `interactive` queue and wait for its answer."""
    study = design.for_assignment(assignment)  # the arm's model
    args = [study.model.pk, assignment.image_id, req.operation, req.substrate, req.region_rle]
    return run_interactive("workers.intervention_tasks.predict_intervention", args)


class TrialLog(ActionLog):
    """Intervention trials as the recorder sees them: one apply, one prediction."""

    related_name = "trials"
    kind_label = "trial"

    def parse(self, data: dict, assignment: Assignment, envelope: Envelope) -> TrialRequest:
        image = assignment.image
        study = design.for_assignment(assignment)
        return parse_trial(data, image.width, image.height, study.option("substrate"))

    def same_request(self, row: InterventionTrial, envelope: Envelope, req: TrialRequest) -> bool:
        return (
            row.seq == envelope.seq
            and row.operation == req.operation
            and row.substrate == req.substrate
            and row.region_rle == req.region_rle
        )

    def compute(self, assignment: Assignment, envelope: Envelope, req: TrialRequest) -> dict:
        return request_intervention(assignment, req)

    def store(self, locked, envelope, req: TrialRequest, result: dict, latency_ms, now) -> dict:
        overlay = design.for_assignment(locked).option("overlay")
        response = {
            "seq": envelope.seq,
            "client_event_id": envelope.cid,
            "operation": req.operation,
            "substrate": req.substrate,
            "overlay": overlay if overlay in OVERLAYS else "none",
            **{key: result[key] for key in RESULT_FIELDS},
            "latency_ms": round(latency_ms, 3),
        }
        InterventionTrial.objects.create(
            assignment=locked,
            seq=envelope.seq,
            client_event_id=envelope.cid,
            operation=req.operation,
            region_rle=req.region_rle,
            substrate=req.substrate,
            overlay=response["overlay"],
            target_class=result["target_class"],
            prob_before=result["prob_before"],
            prob_after=result["prob_after"],
            top5_before=result["top5_before"],
            top5_after=result["top5_after"],
            flipped=result["flipped"],
            area_fraction=result["area_fraction"],
            gradcam_iou=result["gradcam_iou"],
            voice_overlap=result["voice_overlap"],
            model_id=result["model_id"],
            latency_ms=latency_ms,
            client_ts=req.client_ts,
            server_ts=now,
            response=response,
            input=req.input,
        )
        locked.state = {**(locked.state or {}), "trials": envelope.seq + 1}
        locked.status = "active"
        return response

    def public(self, study, response: dict) -> dict:
        return public_response(study, response)


TRIAL_LOG = TrialLog()
RESULT_FIELDS = (
    "target_class", "target_name", "prob_before", "prob_after", "prob_change", "prediction_before",
    "prediction_after", "top5_before", "top5_after", "flipped", "predicts_target", "area_fraction",
)  # fmt: skip


def submit_trial(participant: Participant, assignment_id: int, data: object) -> dict:
    """Validate, predict and store one trial; return the answer (replayed on retries)."""
    return record(TRIAL_LOG, participant, assignment_id, data)


def trial_state(participant: Participant, assignment_id: int) -> dict:
    """What the page needs to resume an intervention assignment: next seq and the trials so far."""
    assignment = owned_assignment(participant, assignment_id)
    study = design.for_assignment(assignment)
    arm = {"arm": design.arm_code(study, assignment.arm)} if design.has_design(study) else {}
    return {
        "id": assignment.pk,
        "status": assignment.status,
        "next_seq": assignment.next_seq,
        **arm,
        # each with its region, so a reloaded page shows the last result it showed before
        "trials": [
            {**public_response(study, t.response), "region_rle": t.region_rle}
            for t in assignment.trials.order_by("seq")
        ],
    }
