"""The study-kind seam holds: a third kind, defined in one module of its own and registered,
runs through enrolment, the consent and participant pages, the recorder (idempotent retries,
seq order, 400s naming the field) and an export, with no change to shared code."""

import json
import zipfile

import pytest

from studies.core.enrolment import enrol_participant
from studies.core.exports import run_export
from studies.core.kinds import get_kind
from studies.models import Study
from tests.core import rating_kind
from tests.factories import ParticipantClient, classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db(transaction=True)  # the kind's table is created for the test


@pytest.fixture
def rating():
    kind = rating_kind.install()
    yield kind
    rating_kind.uninstall()


def test_a_third_kind_runs_end_to_end(rating, client, media, tmp_path):
    assert get_kind("rating") is rating
    study = Study.objects.create(
        kind="rating",
        title="rate these",
        dataset=small_dataset(n=2),
        model=classical_spec(),
        owner=researcher(),
        status="open",
        protocol=rating.validate_protocol({"scale": 7}),
    )
    participant = enrol_participant(study)
    assert participant.assignments.count() == 2
    pc = ParticipantClient(client, participant)
    pc.consent()
    first = participant.assignments.order_by("order").first()
    body = {"client_event_id": "r1", "seq": 0, "value": 6}
    answer = pc.post(f"assignments/{first.pk}/ratings", body)
    assert answer.status_code == 200, answer.content
    assert pc.post(f"assignments/{first.pk}/ratings", body).json() == answer.json()  # retry
    bad = pc.post(
        f"assignments/{first.pk}/ratings", {"client_event_id": "r2", "seq": 1, "value": 9}
    )
    assert bad.status_code == 400 and bad.json()["field"] == "value"
    wrong = pc.post(f"assignments/{first.pk}/events", {"client_event_id": "x", "seq": 1})
    assert wrong.status_code == 400 and "post ratings instead" in wrong.json()["error"]
    state = pc.get(f"assignments/{first.pk}").json()
    assert state == {"id": first.pk, "status": "finished", "next_seq": 1}
    assert rating_kind.Rating.objects.count() == 1

    client.get(f"/s/{study.pk}/join?t={participant.token}")  # the browser's session
    page = client.get(f"/s/{study.pk}/annotate")
    assert page.status_code == 200 and page.content.decode() == "rate 2 images from 1 to 7"
    out = tmp_path / "tidy.zip"
    run_export(study, "tidy", out)
    with zipfile.ZipFile(out) as z:
        assert z.read("ratings.csv").decode().splitlines() == [
            "assignment_id,seq,value",
            f"{first.pk},0,6",
        ]
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["protocol"] == {"scale": 7} and manifest["counts"]["ratings"] == 1


def test_options_of_another_kind_are_refused(rating):
    with pytest.raises(ValueError, match="unknown protocol option"):
        rating.validate_protocol({"substrate": "zero"})
    with pytest.raises(ValueError, match="scale must be an integer >= 2"):
        rating.validate_protocol({"scale": 1})
