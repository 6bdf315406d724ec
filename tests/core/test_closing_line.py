"""Closing a study is a line in the log (issue 25): a click still being computed when the
researcher closes the study is refused (409, nothing stored, the answer says the study closed
and gives the completion code when the participant is owed one); a retry of an action stored
before the line still answers as it did; the join link of a closed study shows a finished
participant's completion code."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from studies.core.closing import close_study
from studies.models import PromptEvent, Study
from studies.prompting.events import PROMPT_LOG
from tests.factories import ParticipantClient, prompting_study, researcher

pytestmark = pytest.mark.django_db


def click(api, assignment_id: int, seq: int, cid: str | None = None):
    body = {
        "client_event_id": cid or str(uuid.uuid4()),
        "seq": seq,
        "action": "add",
        "mode": "green",
        "x": 10,
        "y": 10,
        "client_ts": 1.7e12,
    }
    return api.post(f"assignments/{assignment_id}/events", body)


def test_a_click_in_flight_when_the_study_closes_is_refused(client, monkeypatch):
    study = prompting_study(n_images=2, participants=1)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    api.consent()
    assignment_id = api.get("participants/me").json()["assignments"][0]["id"]
    first = click(api, assignment_id, 0, cid="before-the-line")
    assert first.status_code == 200

    compute = type(PROMPT_LOG).compute

    def close_while_computing(self, assignment, envelope, request):
        result = compute(self, assignment, envelope, request)
        close_study(Study.objects.get(pk=study.pk))  # the researcher presses "close" now
        return result

    monkeypatch.setattr(type(PROMPT_LOG), "compute", close_while_computing)
    response = click(api, assignment_id, 1)
    monkeypatch.undo()
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["study_closed"] is True and body["completion_code"] is None
    assert "This study was closed" in body["error"] and "not stored" in body["error"]
    study.refresh_from_db()
    assert body["closed_at"] == study.closed_at.isoformat()
    # nothing after the line: one event, stamped before closed_at; the log did not move on
    events = PromptEvent.objects.filter(assignment_id=assignment_id)
    assert events.count() == 1
    assert all(e.server_ts <= study.closed_at for e in PromptEvent.objects.all())
    assert participant.assignments.get(pk=assignment_id).next_seq == 1
    # a retry of the click stored before the line answers as it did
    retry = click(api, assignment_id, 0, cid="before-the-line")
    assert retry.status_code == 200 and retry.json() == first.json()
    # any later action is refused the same way
    later = click(api, assignment_id, 1)
    assert later.status_code == 409 and later.json()["study_closed"] is True


def finished_participant(participant):
    study = participant.study
    now = timezone.now()
    participant.assignments.update(status="finished", finished_at=now, survey_answers={"q": "yes"})
    participant.consent_version, participant.consented_at = study.consent_version, now
    participant.completed_at = now
    participant.completion_code = "DONE-42"
    participant.save()
    return participant


def test_the_refusal_carries_the_completion_code_when_owed(client):
    study = prompting_study(n_images=1, participants=1)
    participant = finished_participant(study.participants.get())
    close_study(study)
    api = ParticipantClient(client, participant)
    assignment_id = participant.assignments.get().pk
    response = api.post(f"assignments/{assignment_id}/finish", {})
    assert response.status_code == 409
    body = response.json()
    assert body["study_closed"] is True and body["completion_code"] == "DONE-42"
    assert "your completion code is DONE-42" in body["error"]


def test_a_draft_study_is_not_called_closed(client):
    study = prompting_study(n_images=1, participants=1, status="draft")
    api = ParticipantClient(client, study.participants.get())
    response = api.post("participants/me/consent", {"version": study.consent_version})
    assert response.status_code == 409
    assert response.json()["study_closed"] is False and "draft" in response.json()["error"]


def test_the_join_link_of_a_closed_study_shows_the_completion_code(client):
    study = prompting_study(n_images=1, participants=2)
    first, second = study.participants.order_by("number")
    finished_participant(first)
    second.consented_at = timezone.now()
    second.save()
    owner = researcher()
    client.force_login(owner)
    assert client.post(f"/studies/{study.pk}/status", {"action": "close"}).status_code == 302
    client.logout()

    page = client.get(f"/s/{study.pk}/join?t={first.token}")
    html = page.content.decode()
    assert page.status_code == 403 and "not open any more" in html
    assert 'id="completion-code">DONE-42<' in html
    # in the same browser, the annotation page says the same
    resumed = client.get(f"/s/{study.pk}/annotate")
    assert resumed.status_code in (302, 403)
    # someone who had not finished gets no code, only their participant code
    other = client.get(f"/s/{study.pk}/join?t={second.token}").content.decode()
    assert "DONE-42" not in other and 'id="participant-code">st2<' in other
    assert "completion-code" not in other
    # a stranger learns nothing about anyone
    stranger = client.get(f"/s/{study.pk}/join?t=not-a-token")
    assert stranger.status_code == 403 and b"DONE-42" not in stranger.content
    assert b"participant-code" not in stranger.content


def test_the_annotation_page_of_a_study_closed_meanwhile_says_so(client):
    study = prompting_study(n_images=2, participants=1)
    participant = study.participants.get()
    client.get(f"/s/{study.pk}/join?t={participant.token}")
    client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    assert client.get(f"/s/{study.pk}/annotate").status_code == 200
    close_study(study)
    page = client.get(f"/s/{study.pk}/annotate")
    assert page.status_code == 403 and b"not open any more" in page.content
    assert b'id="participant-code">st1<' in page.content
