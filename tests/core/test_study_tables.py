"""Running a study with many people: the participant and image tables page, sort and search
(by code or crowd id); join links download as CSV; a participant marked excluded stays in the
database and the tidy export (flagged) and is left out of the analysis."""

import csv
import io
import zipfile

import pytest

from studies.core.exports import run_export
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


def codes(html: str) -> list[str]:
    return [chunk.split('"')[0] for chunk in html.split('data-code="')[1:]]


def test_participant_table_pages_sorts_and_searches(client):
    study = prompting_study(n_images=1, participants=30)
    p7 = study.participants.get(code="st7")
    p7.prolific_pid = "PROLIFIC-XYZ"
    p7.save()
    client.force_login(study.owner)
    first = client.get(f"/studies/{study.pk}/").content.decode()
    assert codes(first) == [f"st{i}" for i in range(1, 26)]
    assert "participants page 1 of 2" in first
    second = client.get(f"/studies/{study.pk}/progress?page=2").content.decode()
    assert codes(second) == [f"st{i}" for i in range(26, 31)]
    reverse = client.get(f"/studies/{study.pk}/progress?sort=-code").content.decode()
    assert codes(reverse)[:2] == ["st30", "st29"]
    found = client.get(f"/studies/{study.pk}/progress?q=xyz").content.decode()
    assert codes(found) == ["st7"] and "1 shown" in found
    assert codes(client.get(f"/studies/{study.pk}/progress?q=st3").content.decode()) == [
        "st3", "st30"
    ]  # fmt: skip
    # an unknown sort falls back to the code order
    assert codes(client.get(f"/studies/{study.pk}/progress?sort=nope").content.decode())[0] == "st1"
    links = list(
        csv.DictReader(io.StringIO(client.get(f"/studies/{study.pk}/links.csv").content.decode()))
    )
    assert len(links) == 30 and links[6]["crowd_id"] == "PROLIFIC-XYZ"
    assert (
        links[0]["join_url"]
        == f"http://testserver/s/{study.pk}/join?t={study.participants.get(code='st1').token}"
    )


def test_excluded_participant_is_kept_flagged_and_left_out(client, tmp_path):
    study = prompting_study(n_images=1, participants=2)
    client.force_login(study.owner)
    out = tmp_path / "before.zip"
    run_export(study, "tidy", out)
    with zipfile.ZipFile(out) as z:
        header = z.read("participants.csv").decode().splitlines()[0]
    assert "excluded" not in header  # unchanged bytes while nobody is excluded
    st2 = study.participants.get(code="st2")
    bad = client.post(f"/studies/{study.pk}/participants/{st2.pk}/exclusion", {"excluded": "x"})
    assert bad.status_code == 302
    st2.refresh_from_db()
    assert not st2.excluded
    client.post(
        f"/studies/{study.pk}/participants/{st2.pk}/exclusion",
        {"excluded": "1", "reason": "failed attention check"},
    )
    st2.refresh_from_db()
    assert st2.excluded and st2.excluded_reason == "failed attention check"
    run_export(study, "tidy", out)
    with zipfile.ZipFile(out) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("participants.csv").decode())))
    assert [(r["code"], r["excluded"]) for r in rows] == [("st1", "False"), ("st2", "True")]
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert "st2 (excluded: failed attention check)" in page and "nan" not in page
    detail = client.get(f"/studies/{study.pk}/").content.decode()
    assert "include again" in detail
    client.post(f"/studies/{study.pk}/participants/{st2.pk}/exclusion", {"excluded": "0"})
    st2.refresh_from_db()
    assert not st2.excluded and st2.excluded_reason == ""


def test_attention_check_images_go_to_everyone_and_failures_are_flagged(client, tmp_path):
    from studies.core.enrolment import enrol_participant
    from tests.export_sessions import Script

    study = prompting_study(n_images=4, participants=0)
    client.force_login(study.owner)
    form = client.get(f"/studies/{study.pk}/edit").content.decode()
    assert "Attention-check images" in form
    study.images_per_participant = 1
    study.attention_images = [3]
    study.attention_threshold = 0.99
    study.save()
    people = [enrol_participant(study) for _ in range(3)]
    for p in people:  # the check on top of the one regular image
        indices = sorted(p.assignments.values_list("image__index", flat=True))
        assert len(indices) == 2 and 3 in indices
    check = people[0].assignments.get(image__index=3)
    script = Script(people[0])
    script.send(check, "add", "green", 1.0, 1.0)  # far from the object: a poor mask
    script.send(check, "add", "red", 2.0, 2.0)
    script.send(check, "finish")
    page = client.get(f"/studies/{study.pk}/progress").content.decode()
    assert "attention: failed" in page and "attention: pending" in page
    out = tmp_path / "tidy.zip"
    run_export(study, "tidy", out)
    with zipfile.ZipFile(out) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("participants.csv").decode())))
    assert [r["attention_check"] for r in rows] == ["failed", "pending", "pending"]
    # the edit form names a bad index
    bad = client.post(f"/studies/{study.pk}/edit", {"attention_images": "x"})
    assert "attention_images: comma-separated image indices" in bad.content.decode()
