"""Researchers' pages: access, creating studies with protocol options, links, progress, replay."""

import uuid

import pytest

from studies.models import Job, PromptEvent, Study
from tests.factories import (
    ParticipantClient,
    classical_spec,
    prompting_study,
    researcher,
    small_dataset,
)

pytestmark = pytest.mark.django_db


def study_post(dataset, model, **overrides) -> dict:
    data = {
        "title": "Bird prompts",
        "kind": "prompting",
        "dataset": dataset.pk,
        "model": model.pk,
        "instructions": "Click on the bird.",
        "consent_text": "I agree.",
        "consent_version": "2",
        "survey_question": "Was the ground truth worse?",
        "annotators_per_image": 2,
        "images_per_participant": 2,
        "assignment_seed": 7,
        "allow_public_join": "on",
        "completion_code": "DONE-1",
        "completion_url": "",
        "protocol_show_ground_truth": "on",
        "protocol_show_score": "",
        "protocol_min_green": 1,
        "protocol_min_red": 1,
        "protocol_mask_choice": "best_predicted",
        "protocol_stagnation_limit": 3,
        "protocol_max_rounds": 2,
        "protocol_show_top5": "on",
        "protocol_substrate": "blur",
        "protocol_goal": "flip",
        "protocol_overlay": "none",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_researcher_pages_need_a_login(client):
    study = prompting_study()
    for url in ("/studies/", "/studies/new", f"/studies/{study.pk}/", f"/studies/{study.pk}/edit"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/login/?next="
        ), url
    assert client.get("/accounts/login/").status_code == 200


def test_a_researcher_sees_only_studies_they_own_or_share(client):
    mine = prompting_study()  # owned by alice
    bob = researcher("bob")
    carol = researcher("carol")
    shared = Study.objects.create(
        kind="prompting",
        title="shared with alice",
        dataset=mine.dataset,
        model=mine.model,
        owner=bob,
    )
    shared.collaborators.add(mine.owner)
    hidden = Study.objects.create(
        kind="prompting", title="carol only", dataset=mine.dataset, model=mine.model, owner=carol
    )
    client.force_login(mine.owner)
    listing = client.get("/studies/").content.decode()
    assert (
        "test study" in listing and "shared with alice" in listing and "carol only" not in listing
    )
    assert client.get(f"/studies/{shared.pk}/").status_code == 200
    assignment = mine.participants.first().assignments.first()
    for url in (
        f"/studies/{hidden.pk}/",
        f"/studies/{hidden.pk}/edit",
        f"/studies/{hidden.pk}/progress",
        f"/studies/{hidden.pk}/assignments/{assignment.pk}/replay",  # another study's assignment
        f"/studies/{hidden.pk}/images/{assignment.image_id}/image.png",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/studies/{hidden.pk}/status", {"action": "open"}).status_code == 404
    assert client.post(f"/studies/{hidden.pk}/links", {"count": 2}).status_code == 404
    hidden.refresh_from_db()
    assert hidden.status == "draft" and not hidden.participants.exists()


def test_create_study_with_protocol_options(client):
    owner = researcher()
    client.force_login(owner)
    dataset, model = small_dataset(n=3), classical_spec()
    assert client.get("/studies/new").status_code == 200
    response = client.post("/studies/new", study_post(dataset, model))
    assert response.status_code == 302, response.content.decode()[:2000]
    study = Study.objects.get(title="Bird prompts")
    assert response["Location"] == f"/studies/{study.pk}/"
    assert study.owner == owner and study.status == "draft"
    assert study.protocol["show_score"] is False and study.protocol["show_ground_truth"] is True
    assert (
        study.protocol["stagnation_limit"] == 3
        and study.protocol["mask_choice"] == "best_predicted"
    )
    # a prompting study stores its own kind's options only
    assert "substrate" not in study.protocol and study.protocol["chain_low_res_mask"] is False
    assert (study.annotators_per_image, study.images_per_participant, study.assignment_seed) == (
        2,
        2,
        7,
    )
    assert study.consent_version == "2" and study.completion_code == "DONE-1"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"protocol_stagnation_limit": 0}, "stagnation_limit must be an integer &gt;= 1"),
        ({"protocol_max_rounds": -1}, "max_rounds must be an integer &gt;= 1"),
        ({"protocol_mask_choice": "largest"}, "Select a valid choice"),
    ],
)
def test_invalid_protocol_is_refused_with_a_message(client, override, message):
    client.force_login(researcher())
    response = client.post(
        "/studies/new", study_post(small_dataset(), classical_spec(), **override)
    )
    assert response.status_code == 200 and message in response.content.decode()
    assert not Study.objects.filter(title="Bird prompts").exists()


def test_model_kind_must_fit_the_study_kind(client):
    client.force_login(researcher())
    from studies.models import ModelSpec

    classifier = ModelSpec.objects.create(
        name="cnn", kind="classifier", architecture="demo", owner=researcher()
    )
    response = client.post("/studies/new", study_post(small_dataset(), classifier))
    assert (
        response.status_code == 200
        and "needs a model of kind sam or classical" in response.content.decode()
    )


def test_open_precomputes_embeddings_links_and_close(client, django_capture_on_commit_callbacks):
    study = prompting_study(participants=0, status="draft")
    client.force_login(study.owner)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.post(f"/studies/{study.pk}/status", {"action": "open"}).status_code == 302
    assert len(callbacks) == 1  # the precompute is enqueued once the status change is committed
    study.refresh_from_db()
    assert study.status == "open" and study.opened_at is not None
    job = Job.objects.get(study=study, kind="precompute")
    assert (job.status, job.total, job.done, job.progress) == ("done", 3, 3, 1.0)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="precompute-status"' in page and "3 / 3" in page
    assert client.post(f"/studies/{study.pk}/links", {"count": 4}).status_code == 302
    assert list(study.participants.values_list("code", flat=True)) == ["st1", "st2", "st3", "st4"]
    page = client.get(f"/studies/{study.pk}/").content.decode()
    for p in study.participants.all():
        assert f"/s/{study.pk}/join?t={p.token}" in page
    assert (
        f"http://testserver/s/{study.pk}/join" in page and "PROLIFIC_PID={{%PROLIFIC_PID%}}" in page
    )
    refused = client.post(f"/studies/{study.pk}/links", {"count": 0}, follow=True)
    assert (
        "greater than or equal to 1" in refused.content.decode() and study.participants.count() == 4
    )
    assert client.post(f"/studies/{study.pk}/status", {"action": "close"}).status_code == 302
    study.refresh_from_db()
    assert study.status == "closed" and study.closed_at is not None


def test_progress_and_replay_follow_the_participants_clicks(client):
    study = prompting_study(participants=2)
    participant = study.participants.order_by("number").first()
    api = ParticipantClient(client, participant)
    api.consent()
    assignment = participant.assignments.order_by("order").first()
    bodies = [
        {"action": "add", "mode": "green", "x": 64, "y": 64},
        {"action": "add", "mode": "red", "x": 1, "y": 1},
        {"action": "add", "mode": "red", "x": 126, "y": 1},
        {"action": "clear"},
    ]
    for seq, body in enumerate(bodies):
        response = api.post(
            f"assignments/{assignment.pk}/events",
            {"client_event_id": str(uuid.uuid4()), "seq": seq, **body},
        )
        assert response.status_code == 200
    best = max(
        PromptEvent.objects.filter(assignment=assignment)
        .exclude(iou=None)
        .values_list("iou", flat=True)
    )
    client.force_login(study.owner)
    fragment = client.get(f"/studies/{study.pk}/progress").content.decode()
    assert 'data-code="st1"' in fragment and "in progress" in fragment and f"{best:.3f}" in fragment
    assert 'data-code="st2"' in fragment and "not started" in fragment
    replay = client.get(f"/studies/{study.pk}/assignments/{assignment.pk}/replay")
    assert replay.status_code == 200
    data = replay.context["replay"]
    assert [e["action"] for e in data["events"]] == ["add", "add", "add", "clear"]
    assert [e["timestep"] for e in data["events"]] == [None, 0, 1, None]
    assert data["events"][1]["mask_rle"]["size"] == [
        assignment.image.height,
        assignment.image.width,
    ]
    assert data["events"][3]["green"] == [] and replay.context["best"]["iou"] == pytest.approx(best)
    image = client.get(data["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert client.get(data["mask_url"]).status_code == 200


def test_protocol_is_locked_once_events_exist(client):
    study = prompting_study(participants=1, stagnation_limit=4)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    api.consent()
    a = participant.assignments.first()
    api.post(
        f"assignments/{a.pk}/events",
        {"client_event_id": "e0", "seq": 0, "action": "add", "mode": "green", "x": 5, "y": 5},
    )
    client.force_login(study.owner)
    other = small_dataset(name="Low contrast", n=2)
    response = client.post(
        f"/studies/{study.pk}/edit",
        study_post(
            other,
            classical_spec(),
            title="renamed",
            protocol_stagnation_limit=9,
            protocol_show_score="",
        ),
    )
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.title == "renamed"
    assert study.dataset.name != "Low contrast" and study.protocol["stagnation_limit"] == 4
    assert study.protocol["show_score"] is True
