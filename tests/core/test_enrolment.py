"""Assignment of images: annotators_per_image coverage, reproducible per-participant order."""

import pytest

from studies.core.enrolment import enrol_participant
from studies.models import Assignment, Study
from tests.factories import classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db


def make_study(**fields):
    return Study.objects.create(
        title="alloc",
        dataset=small_dataset(n=6),
        model=classical_spec(),
        owner=researcher(),
        status="open",
        **fields,
    )


def test_every_image_gets_its_annotators_before_any_gets_more():
    study = make_study(annotators_per_image=2, images_per_participant=3, assignment_seed=7)
    for _ in range(4):
        enrol_participant(study)
    per_image = {}
    for a in Assignment.objects.filter(participant__study=study):
        per_image[a.image_id] = per_image.get(a.image_id, 0) + 1
    assert sorted(per_image.values()) == [2] * 6


def test_orders_are_shuffled_per_participant_and_reproducible():
    study = make_study(assignment_seed=3)
    first = enrol_participant(study)
    second = enrol_participant(study)
    order = lambda p: list(p.assignments.order_by("order").values_list("image__index", flat=True))  # noqa: E731
    assert sorted(order(first)) == list(range(6))
    assert order(first) != order(second)
    other = make_study(assignment_seed=3)
    other.title = "again"
    assert order(enrol_participant(other)) == order(first)
    assert [first.code, second.code] == ["st1", "st2"]
