"""seed_demo's intervention study: the demo classifier, open, ground truth shown, analyses queued."""

from __future__ import annotations

import pytest

from studies.core import demo
from studies.intervention.precompute import analyses_complete
from studies.models import Study
from tests.factories import ParticipantClient
from tests.intervention_fixtures import DEMO_WEIGHTS, random_demo_weights

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_an_open_intervention_study(
    client, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    if (
        not DEMO_WEIGHTS.is_file()
    ):  # the plumbing is the same with any weights of the demo architecture
        monkeypatch.setattr(demo, "DEMO_CLASSIFIER_WEIGHTS", str(random_demo_weights(tmp_path)))
    small = demo.demo_dataset
    monkeypatch.setattr(demo, "demo_dataset", lambda name: small(name, n=2))
    with django_capture_on_commit_callbacks(execute=True):
        data = demo.seed_demo()
    (entry,) = [s for s in data["studies"] if s["kind"] == "intervention"]
    study = Study.objects.get(pk=entry["id"])
    assert (
        study.status == "open"
        and study.model.kind == "classifier"
        and study.model.architecture == "demo"
    )
    assert study.model.weights_sha256 and study.option("show_ground_truth") is True
    assert len(entry["participants"]) == demo.PARTICIPANTS_PER_STUDY
    assert analyses_complete(study)
    pc = ParticipantClient(client, study.participants.first())
    pc.consent()
    me = pc.get("participants/me").json()
    assert me["study"]["kind"] == "intervention"
    assert all(a["ground_truth_url"] for a in me["assignments"])
    # idempotent: a second seed finds the same study and does not queue the analyses again
    with django_capture_on_commit_callbacks(execute=True):
        again = demo.seed_demo()
    assert [s["id"] for s in again["studies"] if s["kind"] == "intervention"] == [study.pk]
    assert study.jobs.filter(kind="precompute").count() == 1
