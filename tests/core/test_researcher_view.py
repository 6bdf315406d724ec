"""What the researcher sees (issue 24): the replay of both kinds, the study list's kind, one
time on task on the study page and the analysis page."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from interventions.metrics import rle_encode
from studies.core.time_on_task import TIME_ON_TASK, time_on_task_by_participant
from studies.models import Assignment, InterventionTrial, ModelSpec, Study
from tests.factories import prompting_study, researcher, small_dataset

pytestmark = pytest.mark.django_db


def classifier_study(n_images: int = 3, participants: int = 1) -> Study:
    """An intervention study whose classifier is never run (the trials are written directly)."""
    from studies.core.enrolment import enrol_participant

    model = ModelSpec.objects.create(
        name="cnn", kind="classifier", architecture="demo", class_names=["circle", "square"]
    )
    study = Study.objects.create(
        kind="intervention",
        title="regions",
        dataset=small_dataset(n=n_images),
        model=model,
        owner=researcher(),
        status="open",
    )
    for _ in range(participants):
        enrol_participant(study)
    return study


def add_trial(assignment: Assignment, seq: int, at, flipped: bool = False) -> InterventionTrial:
    region = np.zeros((assignment.image.height, assignment.image.width), dtype=bool)
    region[4:12, 4:12] = True
    return InterventionTrial.objects.create(
        assignment=assignment,
        seq=seq,
        client_event_id=f"c{assignment.pk}-{seq}",
        operation="delete",
        region_rle=rle_encode(region),
        substrate="zero",
        target_class=1,
        prob_before=0.9,
        prob_after=0.2 if flipped else 0.8,
        flipped=flipped,
        area_fraction=float(region.mean()),
        server_ts=at,
    )


def test_an_intervention_replay_lists_the_trials(client):
    study = classifier_study()
    assignment = study.participants.get().assignments.order_by("order").first()
    t0 = timezone.now()
    add_trial(assignment, 0, t0)
    add_trial(assignment, 1, t0 + timedelta(seconds=2.5), flipped=True)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/assignments/{assignment.pk}/replay").content.decode()
    assert "No events logged" not in page and 'id="no-events"' not in page
    assert len(re.findall(r'class="trial[^"]*" data-seq=', page)) == 2
    assert "at 2.5 s" in page and "p(square) 0.900 → 0.200" in page and "flipped" in page
    # the region images it shows exist
    for trial in assignment.trials.all():
        url = f"/studies/{study.pk}/intervention/trials/{trial.pk}/region.png"
        assert url in page and client.get(url)["Content-Type"] == "image/png"


def test_a_replay_without_actions_says_so_for_both_kinds(client):
    for study in (prompting_study(participants=1), classifier_study()):
        assignment = study.participants.get().assignments.first()
        client.force_login(study.owner)
        page = client.get(f"/studies/{study.pk}/assignments/{assignment.pk}/replay")
        assert page.status_code == 200 and 'id="no-events"' in page.content.decode()


def test_the_study_list_names_each_study_kind(client):
    prompting, intervention = prompting_study(participants=0), classifier_study(participants=0)
    client.force_login(prompting.owner)
    page = client.get("/studies/").content.decode()
    kinds = re.findall(r'<td class="study-kind">([^<]*)</td>', page)
    assert sorted(kinds) == ["Intervention", "Prompting"], kinds
    assert intervention.kind_spec.label == "Intervention"


def test_time_on_task_is_the_same_on_the_study_and_analysis_pages(client):
    """Two images: 4 s and 6 s of work with a 60 s break between them: 10 s, not 70 s."""
    study = classifier_study(n_images=3)
    participant = study.participants.get()
    first, second = list(participant.assignments.order_by("order")[:2])
    t0 = timezone.now() - timedelta(minutes=5)
    for assignment, start, length in ((first, t0, 4.0), (second, t0 + timedelta(seconds=64), 6)):
        add_trial(assignment, 0, start)
        add_trial(assignment, 1, start + timedelta(seconds=length / 2))
        Assignment.objects.filter(pk=assignment.pk).update(
            started_at=start, finished_at=start + timedelta(seconds=length), status="finished"
        )
    assert time_on_task_by_participant(study) == {participant.pk: pytest.approx(10.0)}
    client.force_login(study.owner)
    shown = []
    for url in (f"/studies/{study.pk}/", f"/studies/{study.pk}/analysis"):
        page = client.get(url).content.decode()
        shown += re.findall(r'class="num nowrap time-on-task">([^<]*)</td>', page)
        assert f"Time on task: {TIME_ON_TASK}." in page, url
    assert shown == ["10.0 s", "10.0 s"]


def test_an_intervention_study_offers_and_accepts_only_the_formats_it_fills(client, tmp_path):
    from django.core.management import CommandError, call_command

    from studies.core.exports import run_export
    from studies.models import Job

    study = classifier_study()
    add_trial(study.participants.get().assignments.first(), 0, timezone.now())
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    offered = re.findall(
        r'<option value="([^"]+)">', page.split('name="format"')[1].split("</select>")[0]
    )
    assert offered == ["tidy"]
    assert "Not offered for intervention studies: PointPrompt, COCO" in page
    for fmt, label in (("coco", "COCO"), ("pointprompt", "PointPrompt")):
        answer = client.post(
            f"/api/v1/studies/{study.pk}/exports", {"format": fmt}, content_type="application/json"
        )
        assert answer.status_code == 400 and answer.json()["field"] == "format"
        assert (
            f"an intervention study cannot be exported as {label} ({fmt})"
            in (answer.json()["error"])
        )
        assert "this study's formats: tidy" in answer.json()["error"]
        with pytest.raises(ValueError, match=f"cannot be exported as {label}"):
            run_export(study, fmt, tmp_path / f"{fmt}.zip")
        with pytest.raises(CommandError, match=f"cannot be exported as {label}"):
            call_command("export_study", study.pk, "--format", fmt, "--out",
                         str(tmp_path / f"cmd-{fmt}.zip"), "--no-progress")  # fmt: skip
        assert not (tmp_path / f"{fmt}.zip").exists() and not (tmp_path / f"cmd-{fmt}.zip").exists()
    assert not Job.objects.filter(kind="export").exists()
    # the page's own form refuses it too, with the reason as a message
    answer = client.post(f"/studies/{study.pk}/analysis/export", {"format": "coco"}, follow=True)
    assert "cannot be exported as COCO" in answer.content.decode()
    assert not Job.objects.filter(kind="export").exists()
    # tidy is accepted (eager Celery runs it)
    answer = client.post(
        f"/api/v1/studies/{study.pk}/exports", {"format": "tidy"}, content_type="application/json"
    )
    assert answer.status_code == 202, answer.content


def test_a_prompting_study_offers_every_format(client):
    study = prompting_study(participants=1)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    offered = re.findall(
        r'<option value="([^"]+)">', page.split('name="format"')[1].split("</select>")[0]
    )
    assert offered == ["pointprompt", "tidy", "coco"] and 'id="export-left-out"' not in page


def test_the_study_page_shows_the_protocol_as_readable_settings(client):
    study = prompting_study(participants=0, mask_choice="best_predicted", practice_image=2)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    block = page.split('<dl class="settings" id="protocol">')[1].split("</dl>")[0]
    settings = {
        name: (re.sub(r"<[^>]+>", "", label), re.sub(r"<[^>]+>", "", value).strip())
        for name, label, value in re.findall(
            r'data-option="([a-z_0-9]+)"><dt[^>]*>(.*?)</dt><dd>(.*?)</dd>', block, re.S
        )
    }
    assert list(settings) == list(study.kind_spec.options)  # every option, in the kind's order
    assert settings["mask_choice"] == ("Mask shown", "The mask SAM scores highest (changed)")
    assert settings["show_score"] == ("Show the score", "yes")
    assert settings["practice_image"] == ("Practice image", "2 (changed)")
    assert settings["stagnation_limit"][1] == "10"
    assert "=" not in block.replace('="', "")  # no key=value dump


def test_time_on_task_of_an_unfinished_image_runs_from_its_first_to_its_last_action(client):
    study = classifier_study(n_images=2)
    participant = study.participants.get()
    assignment = participant.assignments.order_by("order").first()
    t0 = timezone.now() - timedelta(minutes=1)
    for seq, seconds in enumerate((0.0, 1.0, 7.5)):  # no started_at: a hand-made log
        add_trial(assignment, seq, t0 + timedelta(seconds=seconds))
    assert time_on_task_by_participant(study) == {participant.pk: pytest.approx(7.5)}
    client.force_login(study.owner)
    shown = []
    for url in (f"/studies/{study.pk}/", f"/studies/{study.pk}/analysis"):
        page = client.get(url).content.decode()
        shown += re.findall(r'class="num nowrap time-on-task">([^<]*)</td>', page)
    assert shown == ["7.5 s", "7.5 s"]
