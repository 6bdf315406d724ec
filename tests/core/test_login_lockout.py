"""Researcher sign-in (issue 11, finding 6): django-axes locks a username on an address after
repeated wrong passwords (the right one then fails too), and passwords meet Django's full set of
validators."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from tests.factories import researcher

pytestmark = pytest.mark.django_db


def _login(client, password):
    return client.post("/accounts/login/", {"username": "alice", "password": password})


def test_repeated_wrong_passwords_lock_the_account_on_that_address(settings):
    user = researcher("alice")
    user.set_password("correct horse battery")
    user.save()
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(attacker, "wrong").status_code == 200  # the form again, with its error
    locked = _login(attacker, "wrong")
    assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.content
    assert _login(attacker, "correct horse battery").status_code == 429  # right one refused
    # the researcher, from their own address, still signs in
    own = Client(REMOTE_ADDR="192.0.2.1")
    response = _login(own, "correct horse battery")
    assert response.status_code == 302 and response["Location"] == "/studies/"


def test_a_success_resets_the_count():
    user = researcher("alice")
    user.set_password("correct horse battery")
    user.save()
    client = Client(REMOTE_ADDR="192.0.2.2")
    for _ in range(3):
        for _ in range(5):
            assert _login(client, "wrong").status_code == 200
        assert _login(client, "correct horse battery").status_code == 302
        client.post("/accounts/logout/")


@pytest.mark.parametrize("password", ["short1", "password123", "12345678901", "alice123"])
def test_weak_passwords_are_refused(password):
    user = researcher("alice")
    with pytest.raises(ValidationError):
        validate_password(password, user)
