"""Quality control of crowd studies: attention-check images.

A study lists easy images with a known answer (`Study.attention_images`, data set indices); every
participant gets them (enrolment). Whether a participant failed one is the study kind's call
(`StudyKind.attention_failed(assignment, threshold)`: True failed, False passed, None not
decided yet):

- prompting: the image was finished and the best IoU of the participant's timesteps is below
  `Study.attention_threshold` (no timestep at all is a failure too);
- intervention: the image was finished and none of the participant's regions on it overlaps the
  ground-truth object with IoU >= `Study.attention_threshold` (the known answer is the object).

`attention_statuses` answers for many participants at once (a page of the study's participant
table) in a fixed number of queries: the two rules above, batched (BATCHED); a kind without a
batched rule is asked one assignment at a time.
"""

from __future__ import annotations

from collections.abc import Iterable


def attention_status(study, participant) -> str:
    """ "" (no checks in this study), "passed", "failed", "pending" or "none assigned"."""
    return attention_statuses(study, [participant.pk]).get(participant.pk, "")


def attention_statuses(study, participant_ids: Iterable[int]) -> dict[int, str]:
    """{participant pk: attention_status} for these participants of the study ({} when the
    study has no checks), in one or two queries however many they are."""
    ids = list(participant_ids)
    if not study.attention_images or not ids:
        return {}
    from studies.models import Assignment

    checks = Assignment.objects.real().filter(
        participant_id__in=ids, image__index__in=study.attention_images
    )
    batched = BATCHED.get(study.kind)
    if batched is not None:
        results = batched(checks, study.attention_threshold)
    else:
        failed = study.kind_spec.attention_failed
        results = {
            a.pk: (a.participant_id, failed(a, study.attention_threshold))
            for a in checks.select_related("image")
        }
    per_participant: dict[int, list] = {pk: [] for pk in ids}
    for participant_id, result in results.values():
        per_participant[participant_id].append(result)
    return {pk: _status(found) for pk, found in per_participant.items()}


def _status(results: list) -> str:
    if not results:
        return "none assigned"
    if any(r is True for r in results):
        return "failed"
    if any(r is None for r in results):
        return "pending"
    return "passed"


def prompting_failed(checks, threshold: float) -> dict[int, tuple[int, bool | None]]:
    """studies/prompting/kind.py `attention_failed` for a queryset of assignments, in one
    query: {pk: (participant pk, failed)}."""
    from django.db.models import Max

    rows = checks.annotate(best=Max("events__iou")).values_list(
        "pk", "participant_id", "status", "best"
    )
    return {
        pk: (who, None if status != "finished" else best is None or best < threshold)
        for pk, who, status, best in rows
    }


def intervention_failed(checks, threshold: float) -> dict[int, tuple[int, bool | None]]:
    """studies/intervention/kind.py `attention_failed` for a queryset of assignments, in two
    queries (each image's ground truth read once): {pk: (participant pk, failed)}."""
    import numpy as np
    from PIL import Image

    from interventions.metrics import rle_decode
    from studies.models import InterventionTrial

    assignments = list(checks.select_related("image"))
    regions: dict[int, list] = {a.pk: [] for a in assignments}
    trials = InterventionTrial.objects.filter(assignment__in=checks.filter(status="finished"))
    for pk, rle in trials.order_by("assignment", "seq").values_list("assignment_id", "region_rle"):
        regions[pk].append(rle)
    truths: dict[int, np.ndarray] = {}
    out: dict[int, tuple[int, bool | None]] = {}
    for a in assignments:
        if a.status != "finished":
            out[a.pk] = (a.participant_id, None)
            continue
        if a.image_id not in truths:
            with a.image.mask.open("rb") as handle:
                truths[a.image_id] = np.asarray(Image.open(handle).convert("L")) > 127
        gt = truths[a.image_id]
        failed = True
        for rle in regions[a.pk]:
            region = rle_decode(rle)
            union = np.logical_or(region, gt).sum()
            if union and np.logical_and(region, gt).sum() / union >= threshold:
                failed = False
                break
        out[a.pk] = (a.participant_id, failed)
    return out


# the kinds' rules for many assignments at once: {study kind: (assignments queryset, threshold)
# -> {assignment pk: (participant pk, True failed / False passed / None undecided)}};
# tests/core/test_progress_scale.py checks each against the kind's own `attention_failed`
BATCHED = {"prompting": prompting_failed, "intervention": intervention_failed}
