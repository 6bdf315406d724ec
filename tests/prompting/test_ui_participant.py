"""The participants' pages and what they may reach (Django test client, eager Celery)."""

import uuid

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from studies.models import Assignment, Participant, PromptEvent, Study
from tests.factories import ParticipantClient, prompting_study

pytestmark = pytest.mark.django_db


def inside_and_outside(assignment: Assignment) -> tuple[tuple[int, int], tuple[int, int]]:
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    inside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(gt)), gt.shape)
    outside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(~gt)), gt.shape)
    return (int(inside[1]), int(inside[0])), (int(outside[1]), int(outside[0]))


def post_event(
    api: ParticipantClient,
    assignment_id: int,
    seq: int,
    action: str,
    mode: str = "",
    x=None,
    y=None,
):
    body = {"client_event_id": str(uuid.uuid4()), "seq": seq, "action": action}
    if mode:
        body.update(mode=mode, x=x, y=y)
    return api.post(f"assignments/{assignment_id}/events", body)


def join_and_consent(client, participant: Participant):
    response = client.get(f"/s/{participant.study_id}/join?t={participant.token}")
    assert response.status_code == 302 and response["Location"].endswith(
        f"/s/{participant.study_id}/consent"
    )
    response = client.post(
        f"/s/{participant.study_id}/consent",
        {"agree": "yes", "version": participant.study.consent_version},
    )
    assert response.status_code == 302 and response["Location"].endswith("/instructions")


def test_join_consent_instructions_annotate_flow(client):
    study = prompting_study(participants=1)
    study.consent_text = "We record your clicks. Version two."
    study.instructions = "Outline the single shape."
    study.save()
    participant = study.participants.get()
    client.get(f"/s/{study.pk}/join?t={participant.token}")
    page = client.get(f"/s/{study.pk}/consent")
    assert b"We record your clicks" in page.content and b'id="agree"' in page.content
    refused = client.post(f"/s/{study.pk}/consent", {"version": study.consent_version})
    assert refused.status_code == 400 and b"tick the box" in refused.content
    participant.refresh_from_db()
    assert participant.consented_at is None
    stale = client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": "old"})
    assert stale.status_code == 400
    ok = client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    assert ok.status_code == 302 and ok["Location"].endswith("/instructions")
    participant.refresh_from_db()
    assert (
        participant.consent_version == study.consent_version
        and participant.consented_at is not None
    )
    instructions = client.get(f"/s/{study.pk}/instructions")
    assert (
        b"Outline the single shape." in instructions.content and b"3 images" in instructions.content
    )
    annotate = client.get(f"/s/{study.pk}/annotate")
    assert annotate.status_code == 200
    for element in (
        b'id="canvas-image"',
        b'id="canvas-gt"',
        b'id="score"',
        b'id="finish"',
        b'id="survey"',
    ):
        assert element in annotate.content
    # the mask is drawn on the image; the released tool's separate mask panel is a layout option
    assert b'id="canvas-mask"' not in annotate.content
    study.protocol = {**study.protocol, "layout": "pointprompt"}
    study.save()
    assert b'id="canvas-mask"' in client.get(f"/s/{study.pk}/annotate").content
    assert (
        b"annotate-config" in annotate.content
        and study.survey_question.encode() in annotate.content
    )


def test_reopening_the_link_resumes_where_the_participant_was(client):
    study = prompting_study(participants=1, n_images=2)
    participant = study.participants.get()
    join_and_consent(client, participant)
    # consented but nothing done yet: the instructions again
    assert client.get(f"/s/{study.pk}/join?t={participant.token}")["Location"].endswith(
        "/instructions"
    )
    api = ParticipantClient(client, participant)
    assignment = participant.assignments.order_by("order").first()
    (ix, iy), _ = inside_and_outside(assignment)
    assert post_event(api, assignment.pk, 0, "add", "green", ix, iy).status_code == 200
    assert client.get(f"/s/{study.pk}/join?t={participant.token}")["Location"].endswith("/annotate")
    state = api.get(f"assignments/{assignment.pk}").json()
    assert state["next_seq"] == 1 and state["green"] == [[ix, iy]]
    # everything finished and answered: the completion page
    for a in participant.assignments.all():
        assert api.post(f"assignments/{a.pk}/finish", {}).status_code == 200
        assert (
            api.post(f"assignments/{a.pk}/survey", {"answers": {"answer": "no"}}).status_code == 200
        )
    assert client.get(f"/s/{study.pk}/join?t={participant.token}")["Location"].endswith("/done")
    assert client.get(f"/s/{study.pk}/annotate")["Location"].endswith("/done")


def test_prolific_parameters_enrol_once_and_resume(client):
    study = prompting_study(participants=0)
    url = f"/s/{study.pk}/join?PROLIFIC_PID=abc123&STUDY_ID=s9&SESSION_ID=x1"
    response = client.get(url)
    assert response.status_code == 302 and "/consent?" in response["Location"]
    assert not study.participants.exists()  # enrolled on consent, not on the GET
    consent = client.get(response["Location"])
    assert b'name="PROLIFIC_PID" value="abc123"' in consent.content
    client.post(
        f"/s/{study.pk}/consent",
        {
            "agree": "yes",
            "version": study.consent_version,
            "PROLIFIC_PID": "abc123",
            "STUDY_ID": "s9",
            "SESSION_ID": "x1",
        },
    )
    other = client.__class__()
    # same PID and the platform's session id from another browser: the same participant
    assert other.get(url)["Location"].endswith("/instructions")
    participant = study.participants.get()
    assert (
        participant.prolific_pid,
        participant.external_study_id,
        participant.external_session_id,
    ) == ("abc123", "s9", "x1")
    assert participant.assignments.count() == 3


def test_public_join_off_needs_a_personal_link(client):
    study = prompting_study(participants=0)
    study.allow_public_join = False
    study.save()
    response = client.get(f"/s/{study.pk}/join")
    assert response.status_code == 403 and b"personal link" in response.content
    assert not study.participants.exists()
    assert client.get(f"/s/{study.pk}/join?t=not-a-token").status_code == 404


def test_closed_study_turns_participants_away(client):
    study = prompting_study(participants=1, status="closed")
    participant = study.participants.get()
    response = client.get(f"/s/{study.pk}/join?t={participant.token}")
    assert response.status_code == 403 and b"not open" in response.content


def test_ground_truth_hidden_everywhere_when_show_ground_truth_is_off(client):
    study = prompting_study(participants=1, show_ground_truth=False)
    participant = study.participants.get()
    join_and_consent(client, participant)
    api = ParticipantClient(client, participant)
    me = api.get("participants/me").json()
    assert all(a["ground_truth_url"] is None for a in me["assignments"])
    assignment = participant.assignments.first()
    assert api.get(f"assignments/{assignment.pk}/ground_truth").status_code == 404
    assert (
        client.get(f"/api/v1/assignments/{assignment.pk}/ground_truth").status_code == 404
    )  # session too
    page = client.get(f"/s/{study.pk}/annotate").content
    assert (
        b'id="canvas-gt"' not in page
        and b"Ground truth" not in page
        and b"ground_truth" not in page
    )
    # and with the option on, the same calls do reach it
    shown = prompting_study(participants=1)
    p2 = shown.participants.get()
    api2 = ParticipantClient(client, p2)
    api2.consent()
    a2 = p2.assignments.first()
    assert api2.get("participants/me").json()["assignments"][0]["ground_truth_url"]
    assert api2.get(f"assignments/{a2.pk}/ground_truth").status_code == 200


def test_score_not_sent_when_show_score_is_off(client):
    study = prompting_study(participants=1, show_score=False)
    participant = study.participants.get()
    join_and_consent(client, participant)
    api = ParticipantClient(client, participant)
    assignment = participant.assignments.order_by("order").first()
    (ix, iy), (ox, oy) = inside_and_outside(assignment)
    post_event(api, assignment.pk, 0, "add", "green", ix, iy)
    answer = post_event(api, assignment.pk, 1, "add", "red", ox, oy).json()
    assert answer["timestep"] == 0 and answer["mask_rle"] is not None
    assert answer["iou"] is None
    state = api.get(f"assignments/{assignment.pk}").json()
    assert state["last"]["iou"] is None
    # the score is still computed and stored for the researcher
    stored = PromptEvent.objects.get(assignment=assignment, timestep=0)
    assert stored.iou is not None and stored.iou > 0
    page = client.get(f"/s/{study.pk}/annotate").content
    assert b'id="score"' not in page and b'"showScore": false' in page


def test_a_participant_reaches_only_their_own_assignments(client):
    study = prompting_study(participants=2)
    me, other = study.participants.order_by("number")
    join_and_consent(client, me)
    api = ParticipantClient(client, me)
    theirs = other.assignments.first()
    for path in (
        f"assignments/{theirs.pk}",
        f"assignments/{theirs.pk}/image",
        f"assignments/{theirs.pk}/ground_truth",
    ):
        assert api.get(path).status_code == 404, path
        assert client.get(f"/api/v1/{path}").status_code == 404, path  # with the join session
    assert post_event(api, theirs.pk, 0, "add", "green", 3, 3).status_code == 404
    assert api.post(f"assignments/{theirs.pk}/finish", {}).status_code == 404
    assert (
        api.post(f"assignments/{theirs.pk}/survey", {"answers": {"answer": "yes"}}).status_code
        == 404
    )
    assert not PromptEvent.objects.filter(assignment=theirs).exists()
    theirs.refresh_from_db()
    assert theirs.status == "pending"
    # a participant of one study is not one of another study
    second = prompting_study(participants=1)
    assert client.get(f"/s/{second.pk}/annotate")["Location"].endswith(f"/s/{second.pk}/join")


def test_a_participant_cannot_open_researcher_pages(client):
    study = prompting_study(participants=1)
    participant = study.participants.get()
    join_and_consent(client, participant)
    assignment = participant.assignments.first()
    for url in (
        "/studies/",
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/progress",
        f"/studies/{study.pk}/assignments/{assignment.pk}/replay",
        f"/studies/{study.pk}/images/{assignment.image_id}/mask.png",
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/login/"
        ), url
    response = client.post(f"/studies/{study.pk}/links", {"count": 3})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert study.participants.count() == 1
    assert client.get("/admin/").status_code == 302


def test_completion_page_shows_the_code_and_the_return_url(client):
    study = prompting_study(participants=0, n_images=1)
    study.completion_code = "C0DE-42"
    study.completion_url = "https://app.prolific.com/submissions/complete?cc=C0DE-42"
    study.save()
    response = client.get(f"/s/{study.pk}/join")
    client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    participant = study.participants.get()
    assert b"still have images" in client.get(f"/s/{study.pk}/done").content
    api = ParticipantClient(client, participant)
    a = participant.assignments.get()
    api.post(f"assignments/{a.pk}/finish", {})
    api.post(f"assignments/{a.pk}/survey", {"answers": {"answer": "yes"}})
    page = client.get(f"/s/{study.pk}/done").content.decode()
    assert response.status_code == 302
    assert "C0DE-42" in page and 'id="completion-url"' in page and "submissions/complete" in page


@pytest.mark.django_db
def test_a_new_study_asks_its_kinds_survey_question_which_names_no_model():
    from studies.core.kinds import get_kind
    from tests.factories import classical_spec, researcher, small_dataset

    for kind in ("prompting", "intervention"):
        study = Study.objects.create(
            kind=kind,
            title=f"{kind} study",
            dataset=small_dataset(n=1),
            model=classical_spec(),
            owner=researcher(),
        )
        assert study.survey_question == get_kind(kind).survey_question
        assert "SAM" not in study.survey_question


def test_workspace_options_reach_the_page_and_undo_is_logged(client):
    study = prompting_study(participants=1, n_images=1, round_indicator=True, min_timesteps=2)
    participant = study.participants.get()
    join_and_consent(client, participant)
    page = client.get(f"/s/{study.pk}/annotate").content
    assert b'id="round-meter"' in page and b'"minTimesteps": 2' in page
    assert b'"layout": "workspace"' in page and b'"overlayStyle": "fill"' in page
    api = ParticipantClient(client, participant)
    a = participant.assignments.get()
    spots = [(3, 3), (40, 40)]
    for seq, (mode, (x, y)) in enumerate(zip(("green", "red"), spots, strict=True)):
        body = {"client_event_id": str(uuid.uuid4()), "seq": seq, "action": "add"}
        assert (
            api.post(
                f"assignments/{a.pk}/events", {**body, "mode": mode, "x": x, "y": y}
            ).status_code
            == 200
        )
    undo = api.post(
        f"assignments/{a.pk}/events", {"client_event_id": "u1", "seq": 2, "action": "undo"}
    ).json()
    assert (
        undo["green"] == [[3.0, 3.0]]
        and undo["red"] == []
        and (undo["undo"], undo["redo"]) == (1, 1)
    )
    state = api.get(f"assignments/{a.pk}").json()
    assert (state["undo"], state["redo"]) == (1, 1)
    # finishing before two predictions is refused, naming the minimum
    early = api.post(
        f"assignments/{a.pk}/events", {"client_event_id": "f1", "seq": 3, "action": "finish"}
    )
    assert early.status_code == 400 and "at least 2 predictions" in early.json()["error"]
    assert list(a.events.order_by("seq").values_list("action", flat=True)) == ["add", "add", "undo"]


def test_preparation_reports_the_precompute_jobs_progress_to_the_participant(client):
    from studies.models import Job

    study = prompting_study(participants=1, n_images=2)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    assert api.get("participants/me/preparation").json() == {
        "status": "none",
        "done": 0,
        "total": 0,
    }
    Job.objects.create(study=study, kind="export", status="running", total=9, done=8)
    Job.objects.create(study=study, kind="precompute", status="running", total=2, done=1)
    assert api.get("participants/me/preparation").json() == {
        "status": "running",
        "done": 1,
        "total": 2,
    }
    assert client.get("/api/v1/participants/me/preparation").status_code in (401, 403)
