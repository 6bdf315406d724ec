"""A two-arm prompting experiment end to end (issue 22): participants consent (and are
allocated), work through the real event service in their arm's protocol, and every export,
the manifest and the analysis page carry the arm; the allocation is reproduced from the
manifest; a study without a design exports as before."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from studies.core import design
from studies.core.enrolment import enrol_participant, record_consent
from studies.core.exports import run_export
from studies.core.kinds import get_kind
from studies.models import Study
from tests.export_sessions import run_sessions
from tests.factories import classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = {
    "assignment": "between",
    "seed": 3,
    "block_size": 2,
    "arms": [
        {"name": "two rounds", "options": {"max_rounds": 2}},
        {"name": "one round", "options": {"max_rounds": 1}},
    ],
}


def experiment(plan=PLAN, n_people=4):
    spec = classical_spec()
    study = Study.objects.create(
        title="rounds",
        dataset=small_dataset(n=3),
        model=spec,
        owner=researcher(),
        status="open",
        design=design.validate_design(
            get_kind("prompting"), plan, models=design.model_kinds_by_id([spec])
        ),
    )
    for _ in range(n_people):
        record_consent(enrol_participant(study), study.consent_version)
    run_sessions(study, seed=1)
    return study


def read_csv(z: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(z.read(name).decode())))


def test_the_arm_runs_its_protocol_and_every_export_says_which(tmp_path):
    study = experiment()
    arms = dict(study.participants.values_list("code", "arm"))
    assert set(arms.values()) == {"two rounds", "one round"}
    # the stagnation image ran into the arm's own round limit
    for p in study.participants.all():
        a = p.assignments.real().order_by("order")[1]
        rounds = set(a.events.exclude(timestep=None).values_list("round", flat=True))
        assert max(rounds) == (2 if p.arm == "two rounds" else 1), (p.arm, rounds)

    run_export(study, "tidy", tmp_path / "t.zip")
    with zipfile.ZipFile(tmp_path / "t.zip") as z:
        for table in ("events.csv", "timesteps.csv", "assignments.csv"):
            rows = read_csv(z, table)
            assert rows and all(r["arm"] == arms[r["participant"]] for r in rows), table
        people = read_csv(z, "participants.csv")
        assert {r["code"]: r["arm"] for r in people} == arms
        masks = [json.loads(line) for line in z.read("masks.jsonl").decode().splitlines()]
        assert all(m["arm"] == arms[m["participant"]] for m in masks)
        manifest = json.loads(z.read("manifest.json"))
    block = manifest["design"]
    assert block["assignment"] == "between" and block["seed"] == 3 and block["block_size"] == 2
    assert [a["name"] for a in block["arms"]] == ["two rounds", "one round"]
    assert block["arms"][1]["protocol"]["max_rounds"] == 1
    assert block["arms"][0]["protocol"]["max_rounds"] == 2
    assert block["arms"][0]["model"]["model_id"] == study.model.model_id
    # the allocation, reproduced from the manifest's design and the consent order
    log = block["allocation"]
    replay = design.replay_between(block, len(log))
    assert [(e["arm"], e["block"]) for e in log] == replay
    assert {e["participant"]: e["arm"] for e in log} == arms

    run_export(study, "coco", tmp_path / "c.zip")
    with zipfile.ZipFile(tmp_path / "c.zip") as z:
        coco = json.loads(z.read("annotations.json"))
    humans = [a for a in coco["annotations"] if a["kind"] in ("best", "final")]
    assert humans and all(a["arm"] == arms[a["participant"]] for a in humans)
    assert all(set(im["arms"]) <= set(arms.values()) for im in coco["images"])

    run_export(study, "pointprompt", tmp_path / "p.zip")
    with zipfile.ZipFile(tmp_path / "p.zip") as z:
        assert json.loads(z.read("manifest.json"))["design"]["allocation"] == log


def test_the_analysis_page_compares_the_arms(client):
    study = experiment(n_people=6)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'id="arm-comparison-table"' in page and 'id="arm-dropout"' in page
    for label in ("Best IoU", "Final IoU", "Timesteps per image", "Overprompted"):
        assert label in page
    assert page.count('data-arm="one round"') >= 6  # a figure per plot, the tables
    svg = client.get(f"/studies/{study.pk}/analysis/plots/iou_by_timestep.svg?arm=one+round")
    assert svg.status_code == 200 and b"one round" in svg.content
    assert client.get(f"/studies/{study.pk}/analysis/plots/iou_by_timestep.svg?arm=nope").status_code == 404  # fmt: skip
    rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/studies/{study.pk}/analysis/arms/arm_comparison.csv").content.decode())
        )
    )  # fmt: skip
    assert {r["outcome"] for r in rows} >= {"best", "final", "timesteps", "overprompted"}
    timesteps = next(r for r in rows if r["outcome"] == "timesteps")
    assert timesteps["arm"] == "one round" and timesteps["reference"] == "two rounds"
    assert float(timesteps["difference"]) == pytest.approx(
        float(timesteps["mean_arm"]) - float(timesteps["mean_reference"])
    )
    dropout = client.get(f"/studies/{study.pk}/analysis/arms/arm_dropout.csv").content.decode()
    assert dropout.splitlines()[0].startswith("arm,consented,started,finished")
    per_arm = client.get(f"/studies/{study.pk}/analysis/assignments.csv?arm=two+rounds").content
    codes = {r["participant"] for r in csv.DictReader(io.StringIO(per_arm.decode()))}
    assert codes == set(study.participants.filter(arm="two rounds").values_list("code", flat=True))
    assert client.get(f"/studies/{study.pk}/analysis/arms.svg").status_code == 200


def test_a_study_without_design_has_no_arm_anywhere(client, tmp_path):
    study = experiment(plan={}, n_people=2)
    assert not study.allocations.exists()
    run_export(study, "tidy", tmp_path / "t.zip")
    with zipfile.ZipFile(tmp_path / "t.zip") as z:
        assert "arm" not in z.read("events.csv").decode().splitlines()[0].split(",")
        assert "arm" not in z.read("participants.csv").decode().splitlines()[0].split(",")
        assert "design" not in json.loads(z.read("manifest.json"))
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert "arm-comparison" not in page
    assert client.get(f"/studies/{study.pk}/analysis/arms/arm_comparison.csv").status_code == 404
