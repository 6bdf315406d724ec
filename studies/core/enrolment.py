"""Enrolling participants and assigning them images.

Each image gets `annotators_per_image` participants: a new participant takes the images with the
fewest annotators so far (all images when `images_per_participant` is empty), in an order
shuffled per participant from the study's `assignment_seed`, so orders are reproducible.

A study whose `practice_image` option names a data set image gives every participant that image
first, as a practice assignment (`Assignment.practice`, order 0): it is logged like any other,
but it is not one of the study's images (never assigned for real, never counted in coverage).
"""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from config.client_ip import client_ip
from studies.core import design
from studies.core.kinds import ProtocolError
from studies.core.workspace_options import NO_PRACTICE
from studies.models import Allocation, Assignment, Participant, Study


def practice_image_id(study: Study) -> int | None:
    """The pk of the study's practice image (None: no practice image); ProtocolError naming
    the index when the data set has no such image."""
    index = study.option("practice_image")
    if index is None or index == NO_PRACTICE:
        return None
    pk = study.dataset.images.filter(index=index).values_list("pk", flat=True).first()
    if pk is None:
        raise ProtocolError(
            f"protocol option practice_image: data set {study.dataset.name} has no image with "
            f"index {index}"
        )
    return pk


def _pick_images(study: Study, number: int, practice: int | None = None) -> list[int]:
    images = list(
        study.dataset.images.exclude(pk=practice)
        .annotate(
            taken=Count(
                "assignments",
                filter=Q(assignments__participant__study=study, assignments__practice=False),
            )
        )
        .values_list("pk", "taken")
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
    max_participants: int | None = None,
) -> Participant:
    """Create the next participant (code st<k>) with their shuffled assignments (none past
    `max_participants`, checked under the study's lock). A study of imported human results
    (`Study.is_imported`) enrols no one."""
    if study.is_imported:
        raise EnrolmentRefused("This study holds imported results: no one can join it.", 403)
    for _ in range(5):
        try:
            with transaction.atomic():
                Study.objects.select_for_update().filter(pk=study.pk).first()
                last = (
                    study.participants.order_by("-number").values_list("number", flat=True).first()
                    or 0
                )
                if max_participants and study.participants.count() >= max_participants:
                    raise EnrolmentRefused(
                        "This study has all the participants it needs. Thank you!", 403
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
                practice = practice_image_id(study)
                if practice is not None:
                    Assignment.objects.create(
                        participant=participant, image_id=practice, order=0, practice=True
                    )
                Assignment.objects.bulk_create(
                    Assignment(participant=participant, image_id=image_id, order=order)
                    for order, image_id in enumerate(_pick_images(study, number, practice))
                )
                return participant
        except IntegrityError:
            continue  # a concurrent enrolment took the number: try the next one
    raise RuntimeError("could not enrol a participant after 5 attempts")


class EnrolmentRefused(Exception):
    """A public enrolment that the study's quota or the client throttle turns away."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def client_address(request) -> str:
    """The client's address, read through the trusted proxies only (config/client_ip.py)."""
    return client_ip(request) or "unknown"


def _throttle(client: str) -> None:
    """At most ENROLMENT_RATE_PER_HOUR public enrolments per client address and hour (counted in
    the default cache; 0 turns the throttle off)."""
    limit = settings.ENROLMENT_RATE_PER_HOUR
    if not limit:
        return
    key = f"enrol-rate:{client}:{int(time.time() // 3600)}"
    cache.add(key, 0, timeout=3600)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=3600)
        count = 1
    if count > limit:
        raise EnrolmentRefused(
            "Too many people have joined from this network in the last hour; please try later.",
            429,
        )


def enrol_public(study: Study, *, client: str, **crowd_ids) -> Participant:
    """Enrol a visitor of the public (or crowd) link who consented: bounded by the study's
    `max_participants`, by its arms' targets and by the per-client throttle."""
    if study.max_participants and study.participants.count() >= study.max_participants:
        raise EnrolmentRefused("This study has all the participants it needs. Thank you!", 403)
    if arms_full(study):
        raise EnrolmentRefused(ARMS_FULL, 403)
    _throttle(client)
    return enrol_participant(study, max_participants=study.max_participants, **crowd_ids)


ARMS_FULL = "This study has all the participants it needs in every condition. Thank you!"


def arms_full(study: Study) -> bool:
    """Every arm of a between-participants design is at its target."""
    if design.method(study) != "between":
        return False
    sizes = dict(
        study.allocations.values_list("arm").annotate(n=Count("pk")).values_list("arm", "n")
    )
    return all(
        arm.target is not None and sizes.get(arm.name, 0) >= arm.target
        for arm in design.arms(study)
    )


def record_consent(participant: Participant, version: str) -> Participant:
    """Record the participant's consent (once) and, in a study with a design, allocate them:
    their arm (between) or their arms and image order (within), logged in `Allocation`.

    Runs under the study's row lock (SELECT ... FOR UPDATE on PostgreSQL), so concurrent
    consents take consecutive slots of the seeded sequence. EnrolmentRefused when every arm
    is at its target (nothing is recorded)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=participant.study_id)
        participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.consented:
            return participant
        participant.study = study
        if design.has_design(study) and not hasattr(participant, "allocation"):
            _allocate(study, participant)
        participant.consent_version = version
        participant.consented_at = timezone.now()
        participant.save(update_fields=["consent_version", "consented_at", "arm"])
    return participant


def _allocate(study: Study, participant: Participant) -> None:
    last = study.allocations.order_by("-sequence").values_list("sequence", "slot").first()
    sequence = (last[0] if last else 0) + 1
    names = design.arm_names(study)
    plan = study.design
    if plan["assignment"] == "between":
        sizes = dict(
            study.allocations.values_list("arm").annotate(n=Count("pk")).values_list("arm", "n")
        )
        step = design.next_between(plan, last[1] + 1 if last else 0, sizes)
        if step is None:
            raise EnrolmentRefused(ARMS_FULL, 403)
        arm, block, after = step
        participant.arm = arm
        participant.assignments.update(arm=arm)  # the practice image too: it runs in the arm
        Allocation.objects.create(
            study=study,
            participant=participant,
            sequence=sequence,
            arm=arm,
            block=block,
            slot=after - 1,
        )
        return
    # within: every arm, on different images, the arms in a Latin-square order
    row = sequence - 1
    real = list(participant.assignments.real().order_by("order"))
    counts = {
        (image_id, arm): n
        for image_id, arm, n in Assignment.objects.real()
        .filter(participant__study=study)
        .exclude(arm="")
        .values_list("image_id", "arm")
        .annotate(n=Count("pk"))
        .values_list("image_id", "arm", "n")
    }
    split = design.split_within(names, [a.image_id for a in real], counts, row)
    by_image = {a.image_id: a for a in real}
    for a in real:  # free the orders first (unique per participant)
        a.order += 100_000
    Assignment.objects.bulk_update(real, ["order"])
    for order, (image_id, arm) in enumerate(split):
        by_image[image_id].order = order
        by_image[image_id].arm = arm
    Assignment.objects.bulk_update(real, ["order", "arm"])
    order = [names[i] for i in design.latin_row(len(names), row)]
    participant.assignments.filter(practice=True).update(arm=order[0])
    Allocation.objects.create(
        study=study,
        participant=participant,
        sequence=sequence,
        arm=order[0],
        block=row % (len(names) if len(names) % 2 == 0 else 2 * len(names)),
        slot=row,
        arm_order=order,
    )
