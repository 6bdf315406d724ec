"""Building blocks for tests: a small generated data set, a study, participants, API clients."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model

from studies.core.datasets import create_dataset
from studies.core.enrolment import enrol_participant
from studies.models import Dataset, ModelSpec, Study


def small_dataset(name: str = "Clean shapes", n: int = 3, seed: int = 0) -> Dataset:
    from interventions.demo_data import generate_scene

    existing = Dataset.objects.filter(name=name).first()
    if existing:
        return existing
    scenes = [generate_scene(name, i, seed=seed) for i in range(n)]
    dataset = create_dataset(
        name,
        [(s.image, s.mask, s.label, s.class_name) for s in scenes],
        source="generated",
        seed=seed,
    )
    # shared with the lab, as every data set was before owners (tests of who sees what make
    # their own: tests/core/test_tenancy.py)
    Dataset.objects.filter(pk=dataset.pk).update(shared_with_lab=True)
    dataset.shared_with_lab = True
    return dataset


def classical_spec() -> ModelSpec:
    spec, _ = ModelSpec.objects.get_or_create(
        name="classical",
        defaults={"kind": "classical", "architecture": "classical-v1", "shared_with_lab": True},
    )
    return spec


def researcher(username: str = "alice"):
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    return user or User.objects.create_user(username, password="pw-" + username)


def prompting_study(
    n_images: int = 3, participants: int = 2, status: str = "open", **protocol
) -> Study:
    study = Study.objects.create(
        kind="prompting",
        title="test study",
        dataset=small_dataset(n=n_images),
        model=classical_spec(),
        owner=researcher(),
        status=status,
        protocol={**Study._meta.get_field("protocol").get_default(), **protocol},
    )
    for _ in range(participants):
        enrol_participant(study)
    return study


class ParticipantClient:
    """The JSON API as a participant sees it (Bearer token)."""

    def __init__(self, client, participant):
        self.client = client
        self.participant = participant
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {participant.token}"}

    def get(self, path):
        return self.client.get(f"/api/v1/{path}", **self.headers)

    def post(self, path, body):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            f"/api/v1/{path}", data=data, content_type="application/json", **self.headers
        )

    def consent(self):
        version = self.participant.study.consent_version
        response = self.post("participants/me/consent", {"version": version})
        assert response.status_code == 200, response.content
        return response
