"""Small leaks (issue 11, finding 10): /healthz details only for staff (or a token, issue 23), the
study form never lists the site's accounts (collaborators by exact username), and every page
carries a strict Content-Security-Policy."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.core.test_ui_researcher import study_post as form_data
from tests.factories import prompting_study, researcher

pytestmark = pytest.mark.django_db


def test_healthz_details_only_for_staff_or_the_token(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://secret-broker.internal:6390/0"
    from config.celery_app import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        anonymous = client.get("/healthz", REMOTE_ADDR="203.0.113.9")
        local = client.get("/healthz")  # the test client is 127.0.0.1: no longer enough
        settings.HEALTHZ_TOKEN = "probe-token"
        probe = client.get("/healthz", HTTP_X_HEALTHZ_TOKEN="probe-token")
        staff_user = get_user_model().objects.create_user("ops", password="x" * 12, is_staff=True)
        client.force_login(staff_user)
        staff = client.get("/healthz", REMOTE_ADDR="203.0.113.9")
    finally:
        app.conf.broker_url = "memory://"
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"]["broker"] == {"ok": False}
    assert b"secret-broker" not in anonymous.content and b"6390" not in anonymous.content
    assert local.json()["checks"]["broker"] == {"ok": False}
    assert "error" in probe.json()["checks"]["broker"]
    assert "error" in staff.json()["checks"]["broker"]


def test_study_form_lists_no_accounts_and_adds_collaborators_by_username(client):
    owner = researcher("alice")
    for name in ("bob", "carol", "mallory"):
        researcher(name)
    client.force_login(owner)
    page = client.get("/studies/new").content.decode()
    assert "mallory" not in page and "carol" not in page
    study = prompting_study(participants=0)
    data = form_data(study.dataset, study.model, collaborators="bob, nobody")
    response = client.post("/studies/new", data)
    assert (
        response.status_code == 200
        and "no researcher is called nobody" in response.content.decode()
    )
    response = client.post(
        "/studies/new", form_data(study.dataset, study.model, collaborators="bob carol")
    )
    assert response.status_code == 302
    from studies.models import Study

    created = Study.objects.get(title="Bird prompts")
    assert sorted(created.collaborators.values_list("username", flat=True)) == ["bob", "carol"]
    edit = client.get(f"/studies/{created.pk}/edit").content.decode()
    assert "bob carol" in edit


def test_pages_carry_a_strict_csp(client):
    study = prompting_study(participants=0)
    for url in ("/accounts/login/", f"/s/{study.pk}/consent", "/api/v1/schema/"):
        policy = client.get(url)["Content-Security-Policy"]
        assert (
            "script-src 'self'" in policy
            and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        )
        assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
