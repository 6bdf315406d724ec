"""The researcher's side of a design (issue 22): the arms on the study page with dropout, the
randomisation log, previews that leave the study untouched, and the pilot mark."""

from __future__ import annotations

import pytest

from studies.core import design
from studies.core.enrolment import enrol_participant, record_consent
from studies.core.kinds import get_kind
from studies.models import Allocation, Participant, PromptEvent, Study
from tests.core.test_design_allocation import TWO_ARMS
from tests.factories import classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db


def experiment(owner, plan=TWO_ARMS):
    spec = classical_spec()
    return Study.objects.create(
        title="IoU shown or not",
        dataset=small_dataset(n=4),
        model=spec,
        owner=owner,
        status="open",
        design=design.validate_design(
            get_kind("prompting"), plan, models=design.model_kinds_by_id([spec])
        ),
    )


def test_study_page_shows_the_arms_and_the_log(client):
    owner = researcher()
    study = experiment(owner)
    people = [record_consent(enrol_participant(study), "1") for _ in range(6)]
    client.force_login(owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="design-arms"' in page and "Show the score: no" in page
    assert page.count('class="small preview-arm"') == 2
    assert 'class="arm-tag small"' in page
    log = client.get(f"/studies/{study.pk}/allocation").content.decode()
    for p in people:
        assert f"<td>{p.code}</td><td>{p.arm}</td>" in log
    csv = client.get(f"/studies/{study.pk}/allocation?format=csv").content.decode().splitlines()
    assert csv[0] == "sequence,participant,arm,block,slot,arm_order,at"
    assert [line.split(",")[2] for line in csv[1:]] == [p.arm for p in people]
    # another researcher sees none of it
    client.force_login(researcher("mallory"))
    assert client.get(f"/studies/{study.pk}/allocation").status_code == 404


def test_a_study_without_design_shows_no_design_card_rows(client):
    owner = researcher()
    study = experiment(owner, plan={})
    client.force_login(owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="design-arms"' not in page and 'id="preview-study"' in page


def test_preview_runs_the_arm_and_writes_nothing_to_the_study(client):
    owner = researcher()
    study = experiment(owner)
    client.force_login(owner)
    r = client.post(f"/studies/{study.pk}/preview", {"arm": "score hidden"})
    assert r.status_code == 302
    preview = Study.objects.get(preview_of=study)
    assert r["Location"] == f"/s/{preview.pk}/instructions"
    assert preview.protocol["show_score"] is False and preview.design == {}
    me = client.get("/api/v1/participants/me").json()
    assert me["study"]["id"] == preview.pk and me["study"]["show_score"] is False
    assert "arm" not in client.get(f"/api/v1/assignments/{me['assignments'][0]['id']}").json()
    a = me["assignments"][0]["id"]
    for seq, (x, y) in enumerate([(5, 5), (20, 20)]):
        body = {"seq": seq, "client_event_id": f"e{seq}", "action": "add",
                "mode": "green" if seq == 0 else "red", "x": x, "y": y, "client_ts": 1.0}  # fmt: skip
        assert client.post(f"/api/v1/assignments/{a}/events", body, content_type="application/json").status_code == 200  # fmt: skip
    assert PromptEvent.objects.filter(assignment__participant__study=preview).count() == 2
    # the study itself: no participant, no event, no allocation; the list shows no preview
    assert not study.participants.exists() and not Allocation.objects.filter(study=study).exists()
    assert PromptEvent.objects.filter(assignment__participant__study=study).count() == 0
    listing = client.get("/studies/").content.decode()
    assert "Preview of" not in listing
    assert client.get(f"/studies/{preview.pk}/").status_code == 404
    # a second preview replaces the first
    client.post(f"/studies/{study.pk}/preview", {"arm": "score shown"})
    assert Study.objects.filter(preview_of=study).count() == 1
    assert client.post(f"/studies/{study.pk}/preview", {"arm": "nope"}).status_code == 302
    assert Study.objects.filter(preview_of=study).count() == 1


def test_pilot_marks_the_first_participants_and_unmarks(client):
    owner = researcher()
    study = experiment(owner)
    people = [record_consent(enrol_participant(study), "1") for _ in range(5)]
    Participant.objects.filter(pk=people[4].pk).update(excluded=True, excluded_reason="bot")
    client.force_login(owner)
    client.post(f"/studies/{study.pk}/pilot", {"through": "3"})
    flags = list(study.participants.order_by("number").values_list("excluded", "excluded_reason"))
    assert flags == [(True, "pilot")] * 3 + [(False, ""), (True, "bot")]
    client.post(f"/studies/{study.pk}/pilot", {"through": "0"})
    flags = list(study.participants.order_by("number").values_list("excluded", "excluded_reason"))
    assert flags == [(False, "")] * 4 + [(True, "bot")]
    r = client.post(f"/studies/{study.pk}/pilot", {"through": "-2"}, follow=True)
    assert "pilot: give the last pilot participant" in r.content.decode()
