"""A within-participants intervention experiment (issue 22): everyone works in both arms, on
different images; each image's arm runs its own options and its own model (the second arm's
classifier has other weights); the page learns the arm only through what the protocol shows;
the analysis compares the arms within participants."""

from __future__ import annotations

import numpy as np
import pytest

from interventions.metrics import rle_encode
from studies.core import design
from studies.core.enrolment import enrol_participant, record_consent
from studies.core.kinds import get_kind
from studies.models import Assignment, InterventionTrial, Study
from tests.factories import ParticipantClient, researcher, small_dataset
from tests.intervention_fixtures import classifier_spec, random_demo_weights

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return random_demo_weights(d, seed=0), random_demo_weights(d, seed=1)


def experiment(weights, people=4):
    a, b = classifier_spec(weights[0], "cnn a"), classifier_spec(weights[1], "cnn b")
    plan = {
        "assignment": "within",
        "seed": 2,
        "arms": [
            {"name": "grad-cam shown", "options": {"overlay": "gradcam", "show_top5": True}},
            {"name": "nothing shown", "options": {"overlay": "none", "show_top5": False},
             "model": b.model_id},
        ],
    }  # fmt: skip
    study = Study.objects.create(
        kind="intervention",
        title="does Grad-CAM help",
        dataset=small_dataset(n=4),
        model=a,
        owner=researcher(),
        status="open",
        survey_question="Did the model look at the object?",
        design=design.validate_design(
            get_kind("intervention"), plan, models=design.model_kinds_by_id([a, b])
        ),
    )
    for _ in range(people):
        record_consent(enrol_participant(study), study.consent_version)
    return study, a, b


def test_each_image_runs_its_arm(client, weights):
    study, a, b = experiment(weights)
    for p in study.participants.all():
        arms = list(p.assignments.real().order_by("order").values_list("arm", flat=True))
        assert sorted(arms) == ["grad-cam shown"] * 2 + ["nothing shown"] * 2
    participant = study.participants.get(number=1)
    pc = ParticipantClient(client, participant)
    me = pc.get("participants/me").json()
    assert "arm" not in str(me)  # the participant is never told the arm's name
    for summary in me["assignments"]:
        assignment = Assignment.objects.get(pk=summary["id"])
        info = pc.get(f"assignments/{assignment.pk}/intervention").json()
        shown = assignment.arm == "grad-cam shown"
        assert info["overlay"] == ("gradcam" if shown else "none")
        assert (info["top5"] is not None) is shown
        assert info["config"] == {"minTrials": 0}
        assert "grad-cam shown" not in str(info) and "nothing shown" not in str(info)
        state = pc.get(f"assignments/{assignment.pk}").json()
        assert state["arm"] == ("A" if shown else "B")  # a code, not the arm's name
        region = np.zeros((assignment.image.height, assignment.image.width), dtype=bool)
        region[10:40, 10:40] = True
        r = pc.post(
            f"assignments/{assignment.pk}/trials",
            {"client_event_id": f"t{assignment.pk}", "seq": 0, "operation": "delete",
             "region_rle": rle_encode(region), "substrate": "zero"},
        )  # fmt: skip
        assert r.status_code == 200, r.content
        assert (r.json()["top5_after"] is not None) is shown
        trial = InterventionTrial.objects.get(assignment=assignment)
        assert trial.model_id == (a if shown else b).model_id  # the arm's classifier answered


def test_the_analysis_compares_within_participants(client, weights):
    study, _, _ = experiment(weights, people=3)
    rng = np.random.default_rng(0)
    for p in study.participants.all():
        pc = ParticipantClient(client, p)
        for assignment in p.assignments.real().select_related("image"):
            region = np.zeros((assignment.image.height, assignment.image.width), dtype=bool)
            side = int(rng.integers(20, 60))
            region[:side, :side] = True
            r = pc.post(
                f"assignments/{assignment.pk}/trials",
                {"client_event_id": f"t{assignment.pk}", "seq": 0, "operation": "delete",
                 "region_rle": rle_encode(region), "substrate": "zero"},
            )  # fmt: skip
            assert r.status_code == 200
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert "Arms compared (within participants)" in page
    assert "Prediction flipped" in page and "Agreement with Grad-CAM" in page
    svg = client.get(
        f"/studies/{study.pk}/intervention/analysis/plots/flip_rates.svg?arm=nothing+shown"
    )
    assert svg.status_code == 200
    rows = client.get(f"/studies/{study.pk}/analysis/arms/arm_comparison.csv").content.decode()
    assert "paired participants resampled" in rows or "within" in rows
    dropout = client.get(f"/studies/{study.pk}/analysis/arms/arm_dropout.csv").content.decode()
    lines = dropout.splitlines()
    assert lines[1].startswith("grad-cam shown,3,3,") and lines[2].startswith("nothing shown,3,3,")
