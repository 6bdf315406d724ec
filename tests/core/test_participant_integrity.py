"""Who becomes a participant, and who may act as one (issue 11, findings 3-5): a GET enrols no
one, a PROLIFIC_PID is not a password, public enrolment is bounded."""

from __future__ import annotations

import pytest
from django.test import Client

from studies.models import Assignment, Participant
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db

CROWD = {"PROLIFIC_PID": "pid-1", "STUDY_ID": "s1", "SESSION_ID": "sess-1"}


def _consent(client, study, **fields):
    return client.post(
        f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version, **fields}
    )


def test_plain_gets_of_a_public_link_create_nobody(client):
    study = prompting_study(participants=0)
    for _ in range(20):  # a link-preview bot, a crawler
        bot = Client()
        response = bot.get(f"/s/{study.pk}/join")
        assert response.status_code == 302
        bot.get(response["Location"])  # and the consent page it leads to
    bot.get(f"/s/{study.pk}/join?PROLIFIC_PID=x&SESSION_ID=y")
    assert Participant.objects.count() == 0 and Assignment.objects.count() == 0
    # a person who consents is enrolled, with assignments
    response = client.get(f"/s/{study.pk}/join", follow=True)
    assert b'id="agree"' in response.content
    assert _consent(client, study)["Location"].endswith("/instructions")
    participant = Participant.objects.get()
    assert participant.consented and participant.assignments.count() == 3
    # and their browser resumes them
    assert client.get(f"/s/{study.pk}/join")["Location"].endswith("/instructions")


def test_pid_does_not_open_a_study_without_public_join(client):
    study = prompting_study(participants=0)
    study.allow_public_join = False
    study.save()
    response = client.get(f"/s/{study.pk}/join?PROLIFIC_PID=p&STUDY_ID=s&SESSION_ID=x")
    assert response.status_code == 403 and b"personal link" in response.content
    # nor does posting the consent form directly
    response = _consent(client, study, **CROWD)
    assert response.status_code == 302 and response["Location"].endswith("/join")
    assert not Participant.objects.exists()


def test_someone_elses_pid_does_not_resume_their_session():
    study = prompting_study(participants=0)
    owner = Client()
    _consent(owner, study, **CROWD)
    victim = Participant.objects.get()
    attacker = Client()
    for query in ("PROLIFIC_PID=pid-1", "PROLIFIC_PID=pid-1&SESSION_ID=guess"):
        response = attacker.get(f"/s/{study.pk}/join?{query}")
        assert response.status_code == 403 and b"already started" in response.content
        response = _consent(attacker, study, PROLIFIC_PID="pid-1", SESSION_ID="guess")
        assert response.status_code == 403
    assert attacker.get("/api/v1/participants/me").status_code == 401
    assert Participant.objects.get() == victim
    # the platform's session id that started it resumes (another device of the same person)
    same_person = Client()
    url = f"/s/{study.pk}/join?PROLIFIC_PID=pid-1&SESSION_ID=sess-1"
    assert same_person.get(url)["Location"].endswith("/instructions")
    assert same_person.get("/api/v1/participants/me").json()["code"] == victim.code


def test_participant_quota_and_client_throttle(settings):
    study = prompting_study(participants=0, n_images=1)
    study.max_participants = 2
    study.save()
    for _ in range(2):
        assert _consent(Client(), study).status_code == 302
    full = _consent(Client(), study)
    assert full.status_code == 403 and b"all the participants" in full.content
    assert study.participants.count() == 2

    other = prompting_study(participants=0, n_images=1)
    settings.ENROLMENT_RATE_PER_HOUR = 3
    answers = [_consent(Client(REMOTE_ADDR="10.0.0.9"), other).status_code for _ in range(5)]
    assert answers == [302, 302, 302, 429, 429]
    assert _consent(Client(REMOTE_ADDR="10.0.0.10"), other).status_code == 302
    assert other.participants.count() == 4


def _finished_assignment(study):
    client = Client()
    _consent(client, study)
    participant = Participant.objects.get(study=study)
    assignment = participant.assignments.first()
    assignment.status = "finished"
    assignment.save()
    return client, assignment


def _survey(client, assignment, answers):
    token = assignment.participant.token
    return client.post(
        f"/api/v1/assignments/{assignment.pk}/survey",
        data={"answers": answers},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.parametrize(
    "answers, problem",
    [
        ({"q": "x" * 2001}, "longer than 2000"),
        ({f"q{i}": 1 for i in range(21)}, "more than 20"),
        ({"k" * 101: "yes"}, "1 to 100"),
        ({"q": {"nested": 1}}, "string, number or boolean"),
    ],
)
def test_survey_answers_are_bounded(answers, problem):
    client, assignment = _finished_assignment(prompting_study(participants=0, n_images=1))
    response = _survey(client, assignment, answers)
    assert response.status_code == 400 and problem in response.json()["error"]
    assignment.refresh_from_db()
    assert assignment.survey_answers is None


def test_survey_answers_are_frozen_once_given():
    client, assignment = _finished_assignment(prompting_study(participants=0, n_images=1))
    assert _survey(client, assignment, {"q": "yes"}).status_code == 200
    assert _survey(client, assignment, {"q": "yes"}).status_code == 200  # a retry
    rewrite = _survey(client, assignment, {"q": "no"})
    assert rewrite.status_code == 409
    assignment.refresh_from_db()
    assert assignment.survey_answers == {"q": "yes"}
    assert assignment.participant.completed_at is not None
