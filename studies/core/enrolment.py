"""Enrolling participants and assigning them images.

Each image gets `annotators_per_image` participants: a new participant takes the images with the
fewest annotators so far (all images when `images_per_participant` is empty), in an order
shuffled per participant from the study's `assignment_seed`, so orders are reproducible.
"""

from __future__ import annotations

import random

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from studies.models import Assignment, Participant, Study


def _pick_images(study: Study, number: int) -> list[int]:
    images = list(
        study.dataset.images.annotate(
            taken=Count("assignments", filter=Q(assignments__participant__study=study))
        ).values_list("pk", "taken")
    )
    rng = random.Random(f"{study.assignment_seed}:{number}")
    rng.shuffle(images)
    if study.images_per_participant:
        # attention-check images go to everyone, on top of images_per_participant
        checks = set(
            study.dataset.images.filter(index__in=study.attention_images).values_list(
                "pk", flat=True
            )
            if study.attention_images
            else ()
        )
        regular = [row for row in images if row[0] not in checks]
        regular.sort(key=lambda row: row[1])  # stable: least covered first, ties in shuffled order
        images = regular[: study.images_per_participant] + [r for r in images if r[0] in checks]
        rng.shuffle(images)
    return [pk for pk, _ in images]


def enrol_participant(
    study: Study,
    *,
    prolific_pid: str = "",
    external_study_id: str = "",
    external_session_id: str = "",
) -> Participant:
    """Create the next participant (code st<k>) with their shuffled assignments."""
    for _ in range(5):
        try:
            with transaction.atomic():
                Study.objects.select_for_update().filter(pk=study.pk).first()
                last = (
                    study.participants.order_by("-number").values_list("number", flat=True).first()
                    or 0
                )
                number = last + 1
                participant = Participant.objects.create(
                    study=study,
                    number=number,
                    code=f"st{number}",
                    prolific_pid=prolific_pid,
                    external_study_id=external_study_id,
                    external_session_id=external_session_id,
                    completion_code=study.completion_code,
                )
                Assignment.objects.bulk_create(
                    Assignment(participant=participant, image_id=image_id, order=order)
                    for order, image_id in enumerate(_pick_images(study, number))
                )
                return participant
        except IntegrityError:
            continue  # a concurrent enrolment took the number: try the next one
    raise RuntimeError("could not enrol a participant after 5 attempts")
