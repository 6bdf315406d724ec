"""Participants' intervention trials: validate, predict, store once (DESIGN.md "Intervention
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
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .api_errors import ApiError
from .events import owned_assignment, parse_envelope
from .models import Assignment, InterventionTrial, Participant
from .protocol import OVERLAYS

OPERATIONS = ("delete", "insert")
SUBSTRATES = ("zero", "blur", "mean", "noise")
MAX_RLE_CHARS = 2_000_000


class TrialRequest:
    """A checked trial payload."""

    def __init__(
        self,
        cid: str,
        seq: int,
        operation: str,
        region_rle: dict,
        substrate: str,
        client_ts: float | None,
    ):
        self.cid, self.seq, self.operation = cid, seq, operation
        self.region_rle, self.substrate, self.client_ts = region_rle, substrate, client_ts


def _region(value: object, width: int, height: int) -> tuple[dict, int]:
    """The region as a normalised COCO RLE dict and its pixel count; 400 naming region_rle."""
    from interventions.metrics import rle_decode, rle_encode  # numpy + pycocotools, no torch

    if value is None:
        raise ApiError(
            400, "field region_rle is required ({size: [h, w], counts})", field="region_rle"
        )
    if (
        not isinstance(value, dict)
        or set(value) - {"size", "counts"}
        or not {"size", "counts"} <= set(value)
    ):
        raise ApiError(
            400,
            "field region_rle must be an object with exactly size and counts",
            field="region_rle",
        )
    size = value["size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise ApiError(
            400, "field region_rle.size must be [height, width] (two integers)", field="region_rle"
        )
    if size != [height, width]:
        raise ApiError(
            400,
            f"field region_rle.size {size} differs from the image size [{height}, {width}] (height, width)",
            field="region_rle",
        )
    counts = value["counts"]
    if isinstance(counts, str):
        if len(counts) > MAX_RLE_CHARS:
            raise ApiError(400, "field region_rle.counts is too long", field="region_rle")
    elif isinstance(counts, list):
        if len(counts) > height * width + 1 or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in counts
        ):
            raise ApiError(
                400,
                "field region_rle.counts must be a string or a list of integers",
                field="region_rle",
            )
    else:
        raise ApiError(
            400,
            "field region_rle.counts must be a string (compressed) or a list of run lengths",
            field="region_rle",
        )
    try:
        mask = rle_decode({"size": size, "counts": counts})
    except Exception as exc:  # pycocotools and our checks: every malformed RLE is the input's fault
        raise ApiError(
            400,
            f"field region_rle is not a valid COCO RLE of this image: {exc}",
            field="region_rle",
        ) from None
    area = int(mask.sum())
    if area == 0:
        raise ApiError(
            400, "field region_rle is empty: paint a region before applying", field="region_rle"
        )
    return rle_encode(mask), area


def parse_trial(data: object, width: int, height: int, study_substrate: str) -> TrialRequest:
    """Check a trial payload; raise ApiError(400) naming the field otherwise."""
    cid, seq = parse_envelope(data)
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
        if not math.isfinite(client_ts):
            raise ApiError(
                400, f"field client_ts must be finite (got {client_ts})", field="client_ts"
            )
        client_ts = float(client_ts)
    region, _ = _region(data.get("region_rle"), width, height)
    return TrialRequest(cid, seq, operation, region, substrate, client_ts)


def _replay(trial: InterventionTrial, req: TrialRequest) -> dict:
    same = (
        trial.seq == req.seq
        and trial.operation == req.operation
        and trial.substrate == req.substrate
        and trial.region_rle == req.region_rle
    )
    if not same:
        raise ApiError(409, "client_event_id was already used for a different trial", seq=trial.seq)
    return trial.response


def request_intervention(assignment: Assignment, req: TrialRequest) -> dict:
    """Run the trial's prediction on the `interactive` queue and wait for its answer."""
    from workers.intervention_tasks import predict_intervention  # light module: no torch at import

    study = assignment.participant.study
    args = [study.model_id, assignment.image_id, req.operation, req.substrate, req.region_rle]
    try:
        result = predict_intervention.apply_async(args=args, queue="interactive")
        return result.get(timeout=settings.INTERACTIVE_TIMEOUT_S, propagate=True)
    except ValueError as exc:  # the model refused this input
        raise ApiError(400, f"the model cannot use this trial: {exc}") from exc
    except Exception as exc:  # broker down, worker lost, timeout: nothing stored, client retries
        name = type(exc).__name__
        raise ApiError(
            503, f"the prediction failed ({name}: {exc}); retry with the same client_event_id"
        ) from exc


def public_response(study, response: dict) -> dict:
    """What a participant sees of a stored trial answer (top-5 only when the study shows it)."""
    if study.option("show_top5"):
        return response
    return {**response, "top5_before": None, "top5_after": None}


def submit_trial(participant: Participant, assignment_id: int, data: object) -> dict:
    """Validate, predict and store one trial; return the answer (replayed on retries)."""
    started = time.perf_counter()
    assignment = owned_assignment(participant, assignment_id)
    study = participant.study
    if study.kind != "intervention":
        raise ApiError(400, "this study is not an intervention study: post events instead")
    image = assignment.image
    req = parse_trial(data, image.width, image.height, study.option("substrate"))

    existing = assignment.trials.filter(client_event_id=req.cid).first()
    if existing is not None:
        return public_response(study, _replay(existing, req))
    if assignment.status == "finished":
        raise ApiError(409, "the image is already finished", expected_seq=assignment.next_seq)
    if req.seq != assignment.next_seq:
        raise ApiError(
            409,
            f"seq {req.seq} is out of order; expected {assignment.next_seq}",
            expected_seq=assignment.next_seq,
        )

    result = request_intervention(assignment, req)
    overlay = study.option("overlay")
    latency_ms = (time.perf_counter() - started) * 1000.0
    response = {
        "seq": req.seq,
        "client_event_id": req.cid,
        "operation": req.operation,
        "substrate": req.substrate,
        "overlay": overlay if overlay in OVERLAYS else "none",
        "target_class": result["target_class"],
        "target_name": result["target_name"],
        "prob_before": result["prob_before"],
        "prob_after": result["prob_after"],
        "prob_change": result["prob_change"],
        "prediction_before": result["prediction_before"],
        "prediction_after": result["prediction_after"],
        "top5_before": result["top5_before"],
        "top5_after": result["top5_after"],
        "flipped": result["flipped"],
        "predicts_target": result["predicts_target"],
        "area_fraction": result["area_fraction"],
        "latency_ms": round(latency_ms, 3),
    }
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            if locked.next_seq != req.seq or locked.status == "finished":
                raise _Raced()
            InterventionTrial.objects.create(
                assignment=locked,
                seq=req.seq,
                client_event_id=req.cid,
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
            )
            locked.next_seq = req.seq + 1
            locked.state = {**(locked.state or {}), "trials": req.seq + 1}
            if locked.started_at is None:
                locked.started_at = now
            locked.status = "active"
            locked.save(update_fields=["state", "next_seq", "started_at", "status"])
    except (_Raced, IntegrityError):
        existing = assignment.trials.filter(client_event_id=req.cid).first()
        if existing is not None:
            return public_response(study, _replay(existing, req))
        expected = Assignment.objects.get(pk=assignment.pk).next_seq
        raise ApiError(
            409, f"seq {req.seq} is out of order; expected {expected}", expected_seq=expected
        ) from None
    return public_response(study, response)


class _Raced(Exception):
    pass


def trial_state(participant: Participant, assignment_id: int) -> dict:
    """What the page needs to resume an intervention assignment: next seq and the trials so far."""
    assignment = owned_assignment(participant, assignment_id)
    study = participant.study
    return {
        "id": assignment.pk,
        "status": assignment.status,
        "next_seq": assignment.next_seq,
        "trials": [public_response(study, t.response) for t in assignment.trials.order_by("seq")],
    }
