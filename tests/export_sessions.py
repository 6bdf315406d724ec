"""Scripted prompting sessions through the real event service (eager Celery, classical backend)."""

from __future__ import annotations

import uuid

import numpy as np
from django.utils import timezone
from PIL import Image

from studies.models import Assignment, Participant, Study
from studies.prompting.events import submit_event


def ground_truth(assignment: Assignment) -> np.ndarray:
    with Image.open(assignment.image.mask.path) as im:
        return np.asarray(im.convert("L")) > 127


class Script:
    """Send events for one participant the way the annotation page does."""

    def __init__(self, participant: Participant):
        if not participant.consented:
            participant.consent_version = participant.study.consent_version
            participant.consented_at = timezone.now()
            participant.save(update_fields=["consent_version", "consented_at"])
        self.participant = participant

    def send(
        self,
        assignment: Assignment,
        action: str,
        mode: str = "",
        x: float | None = None,
        y: float | None = None,
    ) -> dict:
        assignment.refresh_from_db(fields=["next_seq"])
        body = {
            "client_event_id": str(uuid.uuid4()),
            "seq": assignment.next_seq,
            "action": action,
            "client_ts": 1.7e12,
        }
        if mode:
            body["mode"] = mode
        if x is not None:
            body.update(x=x, y=y)
        return submit_event(self.participant, assignment.pk, body)


def pixel(rng: np.random.Generator, region: np.ndarray, jitter: bool) -> tuple[float, float]:
    rows, cols = np.nonzero(region)
    k = int(rng.integers(len(rows)))
    x, y = float(cols[k]), float(rows[k])
    if jitter:  # sub-pixel clicks (the browser may send fractions): exports floor them
        x, y = x + float(rng.uniform(0, 0.99)), y + float(rng.uniform(0, 0.99))
    return x, y


def run_sessions(study: Study, seed: int = 0, stagnate: bool = True) -> None:
    """Each participant: image 0 finished by the annotator after a few clicks, image 1 run into
    stagnation (both rounds), image 2 left with a green point only (no timestep), the rest untouched."""
    rng = np.random.default_rng(seed)
    for participant in study.participants.order_by("number"):
        script = Script(participant)
        assignments = list(participant.assignments.select_related("image").order_by("order"))
        for position, assignment in enumerate(assignments):
            gt = ground_truth(assignment)
            jitter = participant.number % 2 == 0
            if position == 0:
                script.send(assignment, "add", "green", *pixel(rng, gt, jitter))
                script.send(assignment, "add", "red", *pixel(rng, ~gt, jitter))
                for _ in range(3):
                    script.send(
                        assignment,
                        "add",
                        str(rng.choice(["green", "red"])),
                        *pixel(rng, gt if rng.random() < 0.5 else ~gt, jitter),
                    )
                x, y = pixel(rng, ~gt, jitter)
                script.send(assignment, "add", "red", x, y)
                script.send(assignment, "remove", "red", x, y)
                script.send(assignment, "finish")
            elif position == 1 and stagnate:
                script.send(assignment, "add", "green", *pixel(rng, gt, jitter))
                script.send(assignment, "add", "red", *pixel(rng, ~gt, jitter))
                for _ in range(60):
                    answer = script.send(assignment, "add", "red", *pixel(rng, ~gt, jitter))
                    if answer["finished"]:
                        break
                    if answer["round_ended"]:
                        script.send(assignment, "add", "green", *pixel(rng, gt, jitter))
                        script.send(assignment, "add", "red", *pixel(rng, ~gt, jitter))
            elif position == 2:
                script.send(assignment, "add", "green", *pixel(rng, gt, jitter))
