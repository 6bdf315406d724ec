"""The API against its own schema (issue 11): schemathesis generates requests for every
operation of /api/v1/schema/ (seeded, a bounded number per operation) and sends them to a live
server as a signed-in participant and researcher. No answer may be a 5xx, and every answer must
match the schema. bench/fuzz_api.py runs the same with many more examples."""

from __future__ import annotations

import re

import pytest
import requests
from django.utils import timezone

from tests.api_fuzz import fuzz
from tests.factories import prompting_study
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 20


def signed_in_researcher(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/accounts/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    answer = session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:300]
    return session


def test_every_endpoint_survives_schemathesis(live_server, tmp_path):
    prompting = prompting_study(n_images=1, participants=1)
    intervention = intervention_study(
        classifier_spec(random_demo_weights(tmp_path)), n_images=1, overlay="gradcam"
    )
    for study in (prompting, intervention):
        study.participants.update(
            consent_version=study.consent_version, consented_at=timezone.now()
        )
    owner = prompting.owner
    owner.set_password("fuzz-the-api-123")
    owner.save()
    session = signed_in_researcher(live_server.url, owner.username, "fuzz-the-api-123")
    tokens = {
        "prompting": prompting.participants.get().token,
        "intervention": intervention.participants.get().token,
    }

    def headers_for(path: str) -> dict:
        if "/exports" in path:
            return {"X-CSRFToken": session.cookies.get("csrftoken", "")}
        kind = "intervention" if re.search(r"trials|intervention|overlay", path) else "prompting"
        return {"Authorization": f"Bearer {tokens[kind]}"}

    from studies.models import Assignment, Job

    real_ids = {
        "assignment_id": list(Assignment.objects.values_list("pk", flat=True)),
        "study_id": [prompting.pk, intervention.pk],
        "export_id": list(Job.objects.values_list("pk", flat=True)) or [1],
        "route": ["events", "trials", "ratings"],
    }
    report = fuzz(
        live_server.url,
        headers_for,
        real_ids=real_ids,
        examples=EXAMPLES,
        seed=11,
        session=session,
    )
    print(report.as_dict())
    assert report.endpoints >= 14
    assert report.cases >= report.endpoints * 5
    assert report.server_errors == 0, report.failures[:5]
    assert report.schema_failures == 0, report.failures[:5]
