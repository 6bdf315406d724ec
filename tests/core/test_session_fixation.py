"""Session fixation on the participant side (issue 25): an attacker who planted their own
`sessionid` in the victim's browser must not end up holding the victim's participant session.
Every time a participant identity is set (personal link, consent, a crowd resume) the session
key is renewed; the planted key then holds no participant."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from studies.core.participant_auth import SESSION_KEY
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


def planted_client() -> tuple[Client, str]:
    """A browser carrying a session the attacker made (and so knows the key of)."""
    attacker = SessionStore()
    attacker["planted"] = True
    attacker.save()
    victim = Client()
    victim.cookies[settings.SESSION_COOKIE_NAME] = attacker.session_key
    return victim, attacker.session_key


def attacker_sees_participant(key: str):
    """What the attacker's key opens now: the participant id, or None."""
    return SessionStore(session_key=key).load().get(SESSION_KEY)


def assert_renewed(victim: Client, key: str, participant) -> None:
    new_key = victim.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != key
    assert attacker_sees_participant(key) is None
    assert SessionStore(session_key=new_key).load().get(SESSION_KEY) == participant.pk
    # the victim goes on as herself; the attacker's cookie is not her
    assert victim.get("/api/v1/participants/me").json()["code"] == participant.code
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = key
    assert attacker.get("/api/v1/participants/me").status_code == 401


def test_a_personal_link_renews_the_session_key():
    study = prompting_study(participants=1)
    participant = study.participants.get()
    victim, key = planted_client()
    response = victim.get(f"/s/{study.pk}/join?t={participant.token}")
    assert response.status_code == 302
    assert_renewed(victim, key, participant)


def test_consenting_on_a_public_link_renews_the_session_key():
    study = prompting_study(participants=0)
    victim, key = planted_client()
    response = victim.post(
        f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version}
    )
    assert response.status_code == 302
    participant = study.participants.get()
    assert_renewed(victim, key, participant)


def test_consent_after_a_link_renews_the_key_again():
    study = prompting_study(participants=1)
    participant = study.participants.get()
    victim = Client()
    victim.get(f"/s/{study.pk}/join?t={participant.token}")
    key = victim.cookies[settings.SESSION_COOKIE_NAME].value
    victim.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != key
    assert attacker_sees_participant(key) is None


def test_a_crowd_resume_renews_the_session_key():
    study = prompting_study(participants=0)
    ids = "PROLIFIC_PID=p1&STUDY_ID=s1&SESSION_ID=x1"
    first = Client()
    first.post(
        f"/s/{study.pk}/consent?{ids}",
        {"agree": "yes", "version": study.consent_version, "PROLIFIC_PID": "p1",
         "STUDY_ID": "s1", "SESSION_ID": "x1"},
    )  # fmt: skip
    participant = study.participants.get()
    victim, key = planted_client()
    response = victim.get(f"/s/{study.pk}/join?{ids}")
    assert response.status_code == 302
    assert_renewed(victim, key, participant)
