"""Hostile trial bodies (issue 11): a 2 MB compressed RLE of one endless run is refused after a
linear read (it took minutes of CPU with the quadratic decoder), and a bigger body is a 413."""

from __future__ import annotations

import json

import pytest

from studies.models import InterventionTrial
from tests.factories import ParticipantClient
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    return random_demo_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def pc(client, weights):
    study = intervention_study(classifier_spec(weights), n_images=1, overlay="none")
    pc = ParticipantClient(client, study.participants.first())
    pc.consent()
    return pc


def _trial(assignment, counts):
    return {
        "client_event_id": "t0",
        "seq": 0,
        "operation": "delete",
        "region_rle": {"size": [assignment.image.height, assignment.image.width], "counts": counts},
        "substrate": "zero",
    }


def test_endless_run_rle_is_a_quick_400(pc):
    assignment = pc.participant.assignments.select_related("image").first()
    body = _trial(assignment, "o" * 1_999_999 + "0")
    response = pc.post(f"assignments/{assignment.pk}/trials", body)
    assert response.status_code == 400
    assert response.json()["field"] == "region_rle"
    assert "longer than the image" in response.json()["error"]
    assert InterventionTrial.objects.count() == 0


def test_trial_body_above_its_cap_is_a_413(pc):
    assignment = pc.participant.assignments.select_related("image").first()
    body = json.dumps(_trial(assignment, "o" * 2_200_000 + "0"))
    response = pc.post(f"assignments/{assignment.pk}/trials", body)
    assert response.status_code == 413
    assert InterventionTrial.objects.count() == 0
