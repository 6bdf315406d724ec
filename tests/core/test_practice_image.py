"""The practice image (study option `practice_image`): enrolment gives it first, as a practice
assignment; its events are logged like any other; coverage, progress, quality checks, analyses
and every export leave it out, unless the tidy export's `include_practice` asks for it; the
option is checked against the data set, locked once events exist and written into the manifest.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from interventions.metrics import rle_encode
from studies.core.enrolment import enrol_participant
from studies.core.exports import check_params, run_export
from studies.core.kinds import ProtocolError, get_kind
from studies.core.views_researcher import study_progress
from studies.models import Assignment, PromptEvent
from studies.prompting.analysis import load_logs
from tests.core.test_ui_researcher import study_post
from tests.export_sessions import run_sessions
from tests.factories import (
    ParticipantClient,
    classical_spec,
    prompting_study,
    researcher,
    small_dataset,
)
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db


def read_csv(zf: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.TextIOWrapper(zf.open(name), "utf-8")))


def manifest(zf: zipfile.ZipFile) -> dict:
    return json.loads(zf.read("manifest.json"))


def test_enrolment_without_a_practice_image_is_unchanged():
    study = prompting_study(n_images=4, participants=0)
    participant = enrol_participant(study)
    rows = list(participant.assignments.values_list("order", "practice"))
    assert rows == [(k, False) for k in range(4)]


def test_enrolment_gives_the_practice_image_first_and_never_for_real(client):
    study = prompting_study(n_images=4, participants=0, practice_image=3)
    participant = enrol_participant(study)
    assignments = list(participant.assignments.select_related("image"))  # default ordering
    first, real = assignments[0], assignments[1:]
    assert (first.practice, first.order, first.image.index) == (True, 0, 3)
    assert [a.order for a in real] == [0, 1, 2] and not any(a.practice for a in real)
    assert sorted(a.image.index for a in real) == [0, 1, 2]  # the practice image is not one

    api = ParticipantClient(client, participant)
    api.consent()
    listed = api.get("participants/me").json()["assignments"]
    assert [(a["practice"], a["order"]) for a in listed] == [
        (True, 0),
        (False, 0),
        (False, 1),
        (False, 2),
    ]


def test_instructions_count_real_images_and_announce_the_practice(client):
    study = prompting_study(n_images=3, participants=0, practice_image=0)
    client.get(f"/s/{study.pk}/join")
    client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    text = client.get(f"/s/{study.pk}/instructions").content.decode()
    # the count says the practice image too: 2 + 1
    assert "a practice image first, then 2 images for the study (3 in all)" in text


def test_one_practice_assignment_per_participant():
    study = prompting_study(n_images=3, participants=1, practice_image=0)
    participant = study.participants.get()
    practice = participant.assignments.get(practice=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            participant=participant, image=practice.image, order=0, practice=True
        )
    # a real assignment of the same image and order is allowed beside the practice one
    Assignment.objects.create(participant=participant, image=practice.image, order=7)


def test_coverage_counts_ignore_practice_assignments():
    study = prompting_study(n_images=5, participants=0, practice_image=4)
    study.images_per_participant = 2
    study.save()
    for _ in range(2):
        enrol_participant(study)
    real = Assignment.objects.real().filter(participant__study=study)
    # every image but the practice one taken exactly once: the practice assignments (both of
    # image 4) count for no coverage
    assert sorted(real.values_list("image__index", flat=True)) == [0, 1, 2, 3]
    assert Assignment.objects.filter(participant__study=study, practice=True).count() == 2


def practice_participant(client, practice_image: int):
    """A prompting study of 3 images with one consented participant and their practice."""
    study = prompting_study(n_images=3, participants=1, practice_image=practice_image)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    api.consent()
    return study, participant, api, participant.assignments.get(practice=True)


def test_events_on_the_practice_image_are_logged_and_kept_out_of_analysis(client):
    study, participant, api, practice = practice_participant(client, practice_image=2)
    for seq, (mode, x, y) in enumerate([("green", 40, 40), ("red", 2, 2)]):
        answer = api.post(
            f"assignments/{practice.pk}/events",
            {
                "client_event_id": f"p{seq}",
                "seq": seq,
                "action": "add",
                "mode": mode,
                "x": x,
                "y": y,
            },
        )
        assert answer.status_code == 200, answer.content
    assert PromptEvent.objects.filter(assignment=practice).count() == 2
    assert api.post(f"assignments/{practice.pk}/finish", {}).json()["status"] == "finished"
    logs = load_logs(study)
    assert practice.pk not in {log.assignment_id for log in logs} and len(logs) == 2
    progress = study_progress(study)
    row = progress["participants"][0]
    assert len(row["assignments"]) == 2 and row["finished"] == 0 and row["events"] == 0


@pytest.fixture
def practised(client):
    """Two participants with a practice image (index 3) and scripted sessions on all images."""
    study = prompting_study(n_images=4, participants=2, practice_image=3)
    run_sessions(study)  # the practice assignment comes first: it gets the finished session
    return study


def test_exports_leave_practice_out_by_default(practised, tmp_path):
    practice_ids = set(
        Assignment.objects.filter(participant__study=practised, practice=True).values_list(
            "pk", flat=True
        )
    )
    assert PromptEvent.objects.filter(assignment_id__in=practice_ids).exists()
    run_export(practised, "tidy", tmp_path / "tidy.zip")
    with zipfile.ZipFile(tmp_path / "tidy.zip") as zf:
        for table in ("events.csv", "timesteps.csv", "assignments.csv"):
            rows = read_csv(zf, table)
            assert rows and not {int(r["assignment_id"]) for r in rows} & practice_ids, table
            assert "practice" not in rows[0]
        masks = [json.loads(line) for line in zf.read("masks.jsonl").decode().splitlines()]
        assert not {m["assignment_id"] for m in masks} & practice_ids
        head = manifest(zf)
    assert head["practice"] == {"assignments": 2, "excluded_assignments": 2, "included": False}
    assert head["protocol"]["practice_image"] == 3
    assert head["counts"]["assignments"] == 6  # 2 participants x 3 real images

    run_export(practised, "coco", tmp_path / "coco.zip")
    with zipfile.ZipFile(tmp_path / "coco.zip") as zf:
        annotations = json.loads(zf.read("annotations.json"))["annotations"]
        assert annotations and not {a.get("assignment_id") for a in annotations} & practice_ids
        assert manifest(zf)["practice"]["excluded_assignments"] == 2

    run_export(practised, "pointprompt", tmp_path / "pp.zip")
    with zipfile.ZipFile(tmp_path / "pp.zip") as zf:
        names = zf.namelist()
        # the practice image (index 3) has no results: its timesteps were practice only
        assert not any("/st1/" in n and "image 3" in n for n in names)
        assert manifest(zf)["counts"]["timesteps"] == sum(
            1
            for e in PromptEvent.objects.filter(
                assignment__participant__study=practised, timestep__isnull=False
            ).exclude(assignment_id__in=practice_ids)
        )


def test_tidy_export_includes_practice_when_asked(practised, tmp_path):
    practice_ids = set(
        Assignment.objects.filter(participant__study=practised, practice=True).values_list(
            "pk", flat=True
        )
    )
    run_export(practised, "tidy", tmp_path / "tidy.zip", params={"include_practice": True})
    with zipfile.ZipFile(tmp_path / "tidy.zip") as zf:
        for table in ("events.csv", "timesteps.csv", "assignments.csv"):
            rows = read_csv(zf, table)
            flagged = {int(r["assignment_id"]) for r in rows if r["practice"] == "True"}
            assert flagged == practice_ids, table
            assert all(
                r["practice"] == "False"
                for r in rows
                if int(r["assignment_id"]) not in practice_ids
            )
        assert read_csv(zf, "events.csv")[0].keys() >= {"participant", "practice", "seq"}
        masks = [json.loads(line) for line in zf.read("masks.jsonl").decode().splitlines()]
        assert {m["assignment_id"] for m in masks if m["practice"]} == practice_ids
        head = manifest(zf)
    assert head["practice"] == {"assignments": 2, "excluded_assignments": 0, "included": True}
    assert head["counts"]["assignments"] == 8


def test_export_parameters_are_checked_with_a_clear_message(practised, tmp_path, client):
    assert check_params("tidy", None) == {"include_practice": False}
    assert check_params("coco", {}) == {}
    with pytest.raises(ValueError, match="include_practice must be true or false, not 'yes'"):
        check_params("tidy", {"include_practice": "yes"})
    with pytest.raises(ValueError, match="applies to the tidy format only, not coco"):
        check_params("coco", {"include_practice": True})
    with pytest.raises(ValueError, match="unknown export parameter 'practice'"):
        run_export(practised, "tidy", tmp_path / "x.zip", params={"practice": True})
    assert not (tmp_path / "x.zip").exists()

    client.force_login(practised.owner)
    url = f"/api/v1/studies/{practised.pk}/exports"
    bad = client.post(
        url, {"format": "tidy", "include_practice": "yes"}, content_type="application/json"
    )
    assert bad.status_code == 400 and bad.json()["field"] == "include_practice"
    assert "true or false" in bad.json()["error"]
    assert not practised.jobs.filter(kind="export").exists()

    out = tmp_path / "cmd.zip"
    call_command(
        "export_study",
        practised.pk,
        format="tidy",
        out=str(out),
        no_progress=True,
        include_practice=True,
    )
    with zipfile.ZipFile(out) as zf:
        assert manifest(zf)["practice"]["included"] is True
    with pytest.raises(CommandError, match="tidy format only"):
        call_command(
            "export_study",
            practised.pk,
            format="coco",
            out=str(out),
            no_progress=True,
            include_practice=True,
        )


def test_export_api_passes_include_practice_to_the_job(
    practised, client, django_capture_on_commit_callbacks
):
    client.force_login(practised.owner)
    url = f"/api/v1/studies/{practised.pk}/exports"
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            url, {"format": "tidy", "include_practice": True}, content_type="application/json"
        )
    assert started.status_code == 202, started.content
    job = practised.jobs.get(kind="export")
    assert job.params == {"format": "tidy", "include_practice": True} and job.status == "done"
    with zipfile.ZipFile(job.file.path) as zf:
        assert manifest(zf)["practice"]["included"] is True


def test_an_old_study_writes_no_practice_block(tmp_path):
    # a protocol stored before the option existed: no practice_image, no manifest block
    study = prompting_study(n_images=2, participants=1)
    study.protocol = {"max_rounds": 2}
    study.save()
    run_export(study, "tidy", tmp_path / "old.zip")
    with zipfile.ZipFile(tmp_path / "old.zip") as zf:
        head = manifest(zf)
    assert "practice" not in head and "practice_image" not in head["protocol"]


def test_intervention_exports_leave_practice_trials_out(client, tmp_path):
    study = intervention_study(
        classifier_spec(random_demo_weights(tmp_path)), n_images=2, practice_image=1
    )
    api = ParticipantClient(client, study.participants.first())
    api.consent()
    for a in api.participant.assignments.select_related("image"):
        m = np.zeros((a.image.height, a.image.width), bool)
        m[5:30, 5:30] = True
        r = api.post(
            f"assignments/{a.pk}/trials",
            {
                "client_event_id": f"t{a.pk}",
                "seq": 0,
                "operation": "delete",
                "region_rle": rle_encode(m),
            },
        )
        assert r.status_code == 200, r.content
    practice = api.participant.assignments.get(practice=True)
    run_export(study, "tidy", tmp_path / "a.zip")
    run_export(study, "tidy", tmp_path / "b.zip", params={"include_practice": True})
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert practice.pk not in {int(t["assignment_id"]) for t in read_csv(zf, "trials.csv")}
        regions = zf.read("interventions/regions.jsonl").decode().splitlines()
        assert len(regions) == 1 and practice.pk != json.loads(regions[0])["assignment_id"]
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        trials = read_csv(zf, "trials.csv")
        assert {(int(t["assignment_id"]) == practice.pk, t["practice"]) for t in trials} == {
            (True, "True"),
            (False, "False"),
        }
        regions = [
            json.loads(x) for x in zf.read("interventions/regions.jsonl").decode().splitlines()
        ]
        assert sorted(r["practice"] for r in regions) == [False, True]


def test_the_option_is_checked_against_the_data_set(client):
    kind = get_kind("prompting")
    assert kind.validate_protocol({})["practice_image"] == -1
    with pytest.raises(ProtocolError, match="practice_image must be an integer >= -1"):
        kind.validate_protocol({"practice_image": -2})
    assert get_kind("intervention").validate_protocol({})["practice_image"] == -1

    client.force_login(researcher())
    dataset = small_dataset(n=3)
    refused = client.post(
        "/studies/new", study_post(dataset, classical_spec(), protocol_practice_image=7)
    )
    assert refused.status_code == 200
    assert "has no image with index 7" in refused.content.decode()
    accepted = client.post(
        "/studies/new", study_post(dataset, classical_spec(), protocol_practice_image=2)
    )
    assert accepted.status_code == 302, accepted.content.decode()[:2000]


def test_the_option_is_locked_once_events_exist(client):
    study, participant, api, practice = practice_participant(client, practice_image=1)
    api.post(
        f"assignments/{practice.pk}/events",  # an event on the practice image locks it too
        {"client_event_id": "e0", "seq": 0, "action": "add", "mode": "green", "x": 5, "y": 5},
    )
    client.force_login(study.owner)
    response = client.post(
        f"/studies/{study.pk}/edit",
        study_post(study.dataset, classical_spec(), title="renamed", protocol_practice_image=0),
    )
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.title == "renamed" and study.protocol["practice_image"] == 1


def test_enrolment_refuses_a_practice_image_the_data_set_lacks():
    study = prompting_study(n_images=2, participants=0, practice_image=5)
    with pytest.raises(ProtocolError, match="has no image with index 5"):
        enrol_participant(study)
    assert not study.participants.exists()
