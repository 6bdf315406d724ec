"""The study form's design section (issue 22): arms with their options, "Add an arm" without
saving, errors on the field the design names, locked once data exists, and a study without a
design saved exactly as before."""

from __future__ import annotations

import re

import pytest

from studies.models import Study
from tests.core.test_ui_researcher import study_post
from tests.factories import classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db


def two_arms(**extra) -> dict:
    return {
        "design_assignment": "between",
        "design_arms": 2,
        "design_block_size": 4,
        "arm0_name": "score shown",
        "arm0_opt_show_score": "true",
        "arm0_target": 10,
        "arm1_name": "score hidden",
        "arm1_opt_show_score": "false",
        "arm1_opt_max_rounds": 3,
        **extra,
    }


def test_the_form_creates_a_two_arm_study(client):
    client.force_login(researcher())
    dataset, model = small_dataset(), classical_spec()
    page = client.get("/studies/new").content.decode()
    assert 'id="design-section"' in page and "as the study" in page
    assert "Show the IoU score" in page  # each option's help beside its arm controls
    r = client.post("/studies/new", study_post(dataset, model, **two_arms()))
    assert r.status_code == 302, r.content.decode()[:2000]
    study = Study.objects.get()
    assert study.design == {
        "assignment": "between",
        "seed": 7,  # the assignment seed, as the help says
        "block_size": 4,
        "arms": [
            {"name": "score shown", "options": {"show_score": True}, "target": 10},
            {"name": "score hidden", "options": {"show_score": False, "max_rounds": 3}},
        ],
    }
    edit = client.get(f"/studies/{study.pk}/edit").content.decode()
    assert 'value="score hidden"' in edit and 'name="arm1_opt_max_rounds" value="3"' in edit


def test_no_design_saves_as_before(client):
    client.force_login(researcher())
    dataset, model = small_dataset(), classical_spec()
    r = client.post("/studies/new", study_post(dataset, model))
    assert r.status_code == 302
    assert Study.objects.get().design == {}


def test_add_an_arm_shows_a_third_column_and_saves_nothing(client):
    client.force_login(researcher())
    dataset, model = small_dataset(), classical_spec()
    r = client.post("/studies/new", study_post(dataset, model, **two_arms(design_add_arm="1")))
    assert r.status_code == 200
    page = r.content.decode()
    assert 'name="arm2_name"' in page and 'value="score shown"' in page
    assert 'name="design_arms" value="3"' in page
    assert not Study.objects.exists()


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"arm1_name": "score shown"}, "arm1_name"),
        ({"arm0_opt_max_rounds": 0}, "arm0_opt_max_rounds"),
        ({"design_block_size": 3}, "design_block_size"),
        ({"design_assignment": "within"}, "arm0_target"),
        ({"arm0_name": "", "arm0_opt_show_score": "", "arm0_target": "", "arm1_name": "",
          "arm1_opt_show_score": "", "arm1_opt_max_rounds": ""}, None),
    ],
)  # fmt: skip
def test_bad_designs_are_refused_on_the_field(client, extra, field):
    client.force_login(researcher())
    dataset, model = small_dataset(), classical_spec()
    r = client.post("/studies/new", study_post(dataset, model, **two_arms(**extra)))
    assert r.status_code == 200
    assert not Study.objects.exists()
    errors = r.context["form"].errors
    if field is None:
        assert "design.arms" in " ".join(errors.get("__all__", []))
    else:
        assert field in errors, errors
        assert errors[field][0]


def test_removing_an_arm(client):
    client.force_login(researcher())
    dataset, model = small_dataset(), classical_spec()
    data = two_arms(design_arms=3, arm2_name="gone", arm2_remove="on")
    r = client.post("/studies/new", study_post(dataset, model, **data))
    assert r.status_code == 302
    assert [a["name"] for a in Study.objects.get().design["arms"]] == [
        "score shown",
        "score hidden",
    ]


def test_the_design_locks_with_the_protocol(client):
    from studies.core.enrolment import enrol_participant

    owner = researcher()
    client.force_login(owner)
    dataset, model = small_dataset(), classical_spec()
    client.post("/studies/new", study_post(dataset, model, **two_arms()))
    study = Study.objects.get()
    p = enrol_participant(study)
    p.assignments.update(next_seq=1)  # a logged action
    page = client.get(f"/studies/{study.pk}/edit").content.decode()
    assert re.search(r'name="arm0_name"[^>]*disabled', page)
    r = client.post(
        f"/studies/{study.pk}/edit",
        study_post(dataset, model, **two_arms(arm0_name="renamed")),
    )
    assert r.status_code == 302
    study.refresh_from_db()
    assert study.design["arms"][0]["name"] == "score shown"
