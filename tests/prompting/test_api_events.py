"""The participant API end to end (eager Celery, classical backend, SQLite)."""

import uuid

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from interventions.metrics import iou, rle_decode
from studies.models import Assignment, PromptEvent
from tests.factories import ParticipantClient, prompting_study

pytestmark = pytest.mark.django_db


def inside_and_outside(assignment: Assignment) -> tuple[tuple[int, int], tuple[int, int]]:
    """A pixel deep inside the ground-truth object and one far from it, as (x, y)."""
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    inside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(gt)), gt.shape)
    outside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(~gt)), gt.shape)
    return (int(inside[1]), int(inside[0])), (int(outside[1]), int(outside[0]))


class Session:
    def __init__(self, client, participant):
        self.api = ParticipantClient(client, participant)
        self.seq = 0

    def event(self, assignment_id, action, mode="", x=None, y=None, expect=200):
        body = {
            "client_event_id": str(uuid.uuid4()),
            "seq": self.seq,
            "action": action,
            "client_ts": 1.7e12,
        }
        if mode:
            body["mode"] = mode
        if x is not None:
            body.update(x=x, y=y)
        response = self.api.post(f"assignments/{assignment_id}/events", body)
        assert response.status_code == expect, response.content
        if response.status_code == 200:
            self.seq += 1
        return response.json(), body


def test_before_consent_every_task_call_is_403(client):
    study = prompting_study()
    participant = study.participants.first()
    api = ParticipantClient(client, participant)
    me = api.get("participants/me").json()
    assert me["code"] == "st1" and me["consented"] is False
    assignment_id = me["assignments"][0]["id"]
    response = api.post(
        f"assignments/{assignment_id}/events",
        {"client_event_id": "a", "seq": 0, "action": "add", "mode": "green", "x": 1, "y": 1},
    )
    assert response.status_code == 403 and "consent" in response.json()["error"]
    assert api.get(f"assignments/{assignment_id}").status_code == 403
    assert api.post("participants/me/consent", {"version": "nope"}).status_code == 400
    assert PromptEvent.objects.count() == 0


def test_me_lists_assignments_with_the_contract_fields(client):
    study = prompting_study(n_images=3)
    api = ParticipantClient(client, study.participants.first())
    api.consent()
    me = api.get("participants/me").json()
    assert me["consented"] is True
    assert len(me["assignments"]) == 3
    first = me["assignments"][0]
    assert {"id", "status", "image_url", "ground_truth_url", "width", "height"} <= set(first)
    assert (
        client.get(
            first["image_url"], HTTP_AUTHORIZATION=f"Bearer {api.participant.token}"
        ).status_code
        == 200
    )
    assert (
        client.get(
            first["ground_truth_url"], HTTP_AUTHORIZATION=f"Bearer {api.participant.token}"
        ).status_code
        == 200
    )


def test_full_flow_clicks_stagnation_round_two_and_automatic_end(client):
    limit = 3
    study = prompting_study(stagnation_limit=limit)
    participant = study.participants.first()
    session = Session(client, participant)
    session.api.consent()
    assignment = participant.assignments.order_by("order").first()
    (ix, iy), (ox, oy) = inside_and_outside(assignment)

    first, _ = session.event(assignment.pk, "add", "green", ix, iy)
    assert first["timestep"] is None and first["green"] == [[ix, iy]] and first["mask_rle"] is None
    second, _ = session.event(assignment.pk, "add", "red", ox, oy)
    assert second["timestep"] == 0 and second["round"] == 1
    mask = rle_decode(second["mask_rle"])
    assert mask.shape == (assignment.image.height, assignment.image.width)
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    assert second["iou"] == pytest.approx(iou(mask, gt))
    assert second["iou"] > 0.5

    # Keep adding red points in the background until the protocol ends both rounds.
    responses = [second]
    corners = [(0, 0), (assignment.image.width - 1, 0), (0, assignment.image.height - 1)]
    for step in range(60):
        last = responses[-1]
        if last["finished"]:
            break
        if last["round_ended"]:
            nxt, _ = session.event(assignment.pk, "add", "green", ix, iy)
            assert nxt["round"] == 2 and nxt["green"] == [[ix, iy]] and nxt["red"] == []
            responses.append(nxt)
        x, y = corners[step % 3]
        responses.append(session.event(assignment.pk, "add", "red", x, y)[0])
    timesteps = [r for r in responses if r["timestep"] is not None]
    assert responses[-1]["finished"] and responses[-1]["stop_reason"] == "stagnation"
    assert [r["timestep"] for r in timesteps] == list(range(len(timesteps)))

    # Recompute the stagnation rule from the scores the API returned.
    best, counter, round_no, ends = 0.0, 1, 1, []
    for r in timesteps:
        assert r["round"] == round_no
        if r["iou"] > best:
            best, counter = r["iou"], 1
            assert not r["round_ended"]
        elif counter >= limit:
            assert r["round_ended"]
            ends.append(r["timestep"])
            best, counter, round_no = 0.0, 1, round_no + 1
        else:
            counter += 1
            assert not r["round_ended"]
    assert len(ends) == 2

    stored = list(PromptEvent.objects.filter(assignment=assignment).order_by("seq"))
    assert [e.seq for e in stored] == list(range(session.seq))
    assert len({e.client_event_id for e in stored}) == len(stored)
    ts = [e for e in stored if e.timestep is not None]
    assert [e.iou for e in ts] == [r["iou"] for r in timesteps]
    assert all(
        e.model_id == "classical-v1" == study.model.model_id
        and e.mask_rle
        and e.predicted_iou is not None
        for e in ts
    )
    assert all(e.server_ts and e.client_ts == 1.7e12 and e.latency_ms > 0 for e in stored)
    assert {e.round for e in ts} == {1, 2}
    assignment.refresh_from_db()
    assert assignment.status == "finished" and assignment.stop_reason == "stagnation"

    # After the end nothing more is accepted.
    body = {
        "client_event_id": "late",
        "seq": session.seq,
        "action": "add",
        "mode": "green",
        "x": ix,
        "y": iy,
    }
    assert session.api.post(f"assignments/{assignment.pk}/events", body).status_code == 409
    # The survey is answered after the image.
    answer = session.api.post(
        f"assignments/{assignment.pk}/survey", {"answers": {"suboptimal_gt": "no"}}
    )
    assert answer.status_code == 200
    assignment.refresh_from_db()
    assert assignment.survey_answers == {"suboptimal_gt": "no"}


def test_resume_state_and_finish(client):
    study = prompting_study()
    participant = study.participants.first()
    session = Session(client, participant)
    session.api.consent()
    assignment = participant.assignments.order_by("order").first()
    (ix, iy), (ox, oy) = inside_and_outside(assignment)
    session.event(assignment.pk, "add", "green", ix, iy)
    last, _ = session.event(assignment.pk, "add", "red", ox, oy)
    state = session.api.get(f"assignments/{assignment.pk}").json()
    assert state["round"] == 1 and state["timestep"] == 1 and state["next_seq"] == 2
    assert state["green"] == [[ix, iy]] and state["red"] == [[ox, oy]]
    assert state["last"]["mask_rle"] == last["mask_rle"]
    cleared, _ = session.event(assignment.pk, "clear")
    assert cleared["green"] == [] and cleared["timestep"] is None
    finished = session.api.post(f"assignments/{assignment.pk}/finish", {})
    assert finished.status_code == 200 and finished.json()["stop_reason"] == "finished"
    assert PromptEvent.objects.filter(assignment=assignment, action="finish").count() == 1
    # finishing twice stores nothing more
    assert session.api.post(f"assignments/{assignment.pk}/finish", {}).status_code == 200
    assert PromptEvent.objects.filter(assignment=assignment).count() == 4


def test_same_client_event_id_replays_the_answer(client):
    study = prompting_study()
    participant = study.participants.first()
    session = Session(client, participant)
    session.api.consent()
    assignment = participant.assignments.order_by("order").first()
    (ix, iy), (ox, oy) = inside_and_outside(assignment)
    session.event(assignment.pk, "add", "green", ix, iy)
    answer, body = session.event(assignment.pk, "add", "red", ox, oy)
    again = session.api.post(f"assignments/{assignment.pk}/events", body)
    assert again.status_code == 200 and again.json() == answer
    assert PromptEvent.objects.filter(assignment=assignment).count() == 2
    reused = {**body, "x": ox - 1}
    conflict = session.api.post(f"assignments/{assignment.pk}/events", reused)
    assert conflict.status_code == 409 and "different event" in conflict.json()["error"]
    assert PromptEvent.objects.filter(assignment=assignment).count() == 2


def test_seq_must_be_contiguous(client):
    study = prompting_study()
    participant = study.participants.first()
    session = Session(client, participant)
    session.api.consent()
    assignment = participant.assignments.order_by("order").first()
    session.event(assignment.pk, "add", "green", 5, 5)
    for wrong in (0, 2, 7):
        body = {
            "client_event_id": f"s{wrong}",
            "seq": wrong,
            "action": "add",
            "mode": "red",
            "x": 1,
            "y": 1,
        }
        response = session.api.post(f"assignments/{assignment.pk}/events", body)
        assert response.status_code == 409
        assert response.json()["expected_seq"] == 1
    assert PromptEvent.objects.filter(assignment=assignment).count() == 1


BAD_EVENTS = [
    ({"seq": 0, "action": "add", "mode": "green", "x": 1, "y": 1}, "client_event_id"),
    ({"client_event_id": "b", "action": "add", "mode": "green", "x": 1, "y": 1}, "seq"),
    ({"client_event_id": "b", "seq": "0", "action": "add", "mode": "green", "x": 1, "y": 1}, "seq"),
    ({"client_event_id": "b", "seq": 0, "mode": "green", "x": 1, "y": 1}, "action"),
    (
        {"client_event_id": "b", "seq": 0, "action": "paint", "mode": "green", "x": 1, "y": 1},
        "action",
    ),
    ({"client_event_id": "b", "seq": 0, "action": "add", "mode": "blue", "x": 1, "y": 1}, "mode"),
    ({"client_event_id": "b", "seq": 0, "action": "add", "mode": "green", "y": 1}, "x"),
    ({"client_event_id": "b", "seq": 0, "action": "add", "mode": "green", "x": "12", "y": 1}, "x"),
    ({"client_event_id": "b", "seq": 0, "action": "add", "mode": "green", "x": 1, "y": True}, "y"),
    (
        {"client_event_id": "b", "seq": 0, "action": "add", "mode": "green", "x": -1, "y": 1},
        "outside",
    ),
    (
        {"client_event_id": "b", "seq": 0, "action": "add", "mode": "green", "x": 1, "y": 100000},
        "outside",
    ),
    (
        {
            "client_event_id": "b",
            "seq": 0,
            "action": "add",
            "mode": "green",
            "x": 1,
            "y": 1,
            "client_ts": "now",
        },
        "client_ts",
    ),
    ([1, 2, 3], "object"),
]


@pytest.mark.parametrize("body, word", BAD_EVENTS)
def test_bad_input_is_a_400_naming_the_problem_and_stores_nothing(client, body, word):
    study = prompting_study(n_images=1, participants=1)
    participant = study.participants.first()
    api = ParticipantClient(client, participant)
    api.consent()
    assignment = participant.assignments.first()
    response = api.post(f"assignments/{assignment.pk}/events", body)
    assert response.status_code == 400, response.content
    assert word in response.json()["error"]
    assignment.refresh_from_db()
    assert PromptEvent.objects.count() == 0 and assignment.next_seq == 0 and assignment.state == {}


@pytest.mark.parametrize(
    "raw",
    [
        '{"client_event_id": "n", "seq": 0, "action": "add", "mode": "green", "x": NaN, "y": 1}',
        "{not json",
    ],
)
def test_nan_and_garbage_bodies_are_400(client, raw):
    study = prompting_study(n_images=1, participants=1)
    participant = study.participants.first()
    api = ParticipantClient(client, participant)
    api.consent()
    assignment = participant.assignments.first()
    response = api.post(f"assignments/{assignment.pk}/events", raw)
    assert response.status_code == 400
    assert response.json()["error"]
    assert PromptEvent.objects.count() == 0


def test_someone_elses_assignment_is_not_found(client):
    study = prompting_study(n_images=1, participants=2)
    first, second = study.participants.order_by("number")
    theirs = second.assignments.first()
    api = ParticipantClient(client, first)
    api.consent()
    body = {"client_event_id": "x", "seq": 0, "action": "add", "mode": "green", "x": 1, "y": 1}
    assert api.post(f"assignments/{theirs.pk}/events", body).status_code == 404
    assert api.get(f"assignments/{theirs.pk}").status_code == 404
    assert api.get(f"assignments/{theirs.pk}/image").status_code == 404
    assert api.post(f"assignments/{theirs.pk}/finish", {}).status_code == 404
    assert PromptEvent.objects.count() == 0
    assert client.get("/api/v1/participants/me").status_code == 401
    assert (
        client.get("/api/v1/participants/me", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    )


def test_hidden_ground_truth_and_score_are_never_sent(client):
    study = prompting_study(n_images=1, participants=1, show_ground_truth=False, show_score=False)
    participant = study.participants.first()
    session = Session(client, participant)
    session.api.consent()
    me = session.api.get("participants/me").json()
    assert me["assignments"][0]["ground_truth_url"] is None
    assignment = participant.assignments.first()
    assert session.api.get(f"assignments/{assignment.pk}/ground_truth").status_code == 404
    (ix, iy), (ox, oy) = inside_and_outside(assignment)
    session.event(assignment.pk, "add", "green", ix, iy)
    answer, _ = session.event(assignment.pk, "add", "red", ox, oy)
    assert answer["iou"] is None and answer["mask_rle"] is not None
    assert session.api.get(f"assignments/{assignment.pk}").json()["last"]["iou"] is None
    # the score is still recorded for the researcher
    assert PromptEvent.objects.get(assignment=assignment, seq=1).iou > 0


def test_closed_study_refuses_events(client):
    study = prompting_study(n_images=1, participants=1, status="closed")
    participant = study.participants.first()
    api = ParticipantClient(client, participant)
    assert (
        api.post("participants/me/consent", {"version": study.consent_version}).status_code == 409
    )


def test_openapi_schema_is_served(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/assignments/{assignment_id}/events" in response.content
