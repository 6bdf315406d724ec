"""What a stranger can send the participants' API: every hostile body is a 4xx naming the
problem, in the API's JSON error format, quickly, and nothing is stored (issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from interventions.metrics import compressed_runs, rle_decode, rle_encode
from studies.models import Participant, PromptEvent
from tests.factories import ParticipantClient, prompting_study, researcher

pytestmark = pytest.mark.django_db

HOSTILE_CASES: list[str] = []  # filled as the parametrised cases run (counted in the report)


# --- the RLE decoder -----------------------------------------------------------------------


def test_linear_rle_decoder_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(11)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if i % 4 == 0:
            mask = np.zeros((h, w), dtype=bool)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = True
        else:
            mask = rng.random((h, w)) < rng.random()
        rle = rle_encode(mask)
        ours = rle_decode(rle)
        theirs = mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode()}).astype(bool)
        assert ours.shape == (h, w)
        assert np.array_equal(ours, theirs)
        assert np.array_equal(ours, mask)
        # the uncompressed form decodes to the same mask
        runs = compressed_runs(rle["counts"].encode(), h * w)
        assert np.array_equal(rle_decode({"size": [h, w], "counts": runs.tolist()}), mask)


@pytest.mark.parametrize(
    "counts, problem",
    [
        ("o" * 1_999_999 + "0", "longer than the image"),  # one endless run: quadratic before
        ("o" * 20, "truncated"),
        ("1" * 10_000, "more runs"),  # 10000 runs of 1 on a 100-pixel image
        ("0" + "?" * 8, "pixels"),  # runs that overflow h * w
        ("\x7f", "invalid character"),
        ("é", "invalid character"),
    ],
)
def test_hostile_compressed_counts_are_refused(counts, problem):
    with pytest.raises(ValueError, match=problem):
        rle_decode({"size": [10, 10], "counts": counts})


def test_negative_runs_are_refused():
    # the 4th value is a delta to the 2nd: 5 then -9 ("G", 5-bit two's complement) is -4
    with pytest.raises(ValueError, match="negative"):
        rle_decode({"size": [4, 4], "counts": "555G"})
    assert rle_decode({"size": [4, 4], "counts": "555L"}).sum() == 5 + 1  # -4: runs 5,5,5,1


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def pc(client):
    study = prompting_study(n_images=1, participants=1)
    pc = ParticipantClient(client, study.participants.first())
    pc.consent()
    return pc


def _assignment(pc):
    return pc.participant.assignments.order_by("order").first()


def _event(seq=0, **extra):
    return {
        "client_event_id": f"e{seq}",
        "seq": seq,
        "action": "add",
        "mode": "green",
        "x": 5,
        "y": 5,
        **extra,
    }


def _raw_post(pc, path, raw: bytes):
    return pc.client.post(
        f"/api/v1/{path}", data=raw, content_type="application/json", **pc.headers
    )


HOSTILE_BODIES = {
    "400-digit x": (
        b'{"client_event_id": "a", "seq": 0, "action": "add", "mode": "green", '
        b'"x": ' + b"9" * 400 + b', "y": 1}',
        "x",
    ),
    "400-digit client_ts": (
        b'{"client_event_id": "a", "seq": 0, "action": "reset", "client_ts": ' + b"1" * 400 + b"}",
        "client_ts",
    ),
    "1e999 x": (
        b'{"client_event_id": "a", "seq": 0, "action": "add", "mode": "green", "x": 1e999, "y": 1}',
        "x",
    ),
    "NaN": (b'{"client_event_id": "a", "seq": 0, "action": "reset", "client_ts": NaN}', None),
    "nested 30000 deep": (b"[" * 30_000 + b"]" * 30_000, None),
    "nested 100 deep": (b'{"client_event_id": ' + b"[" * 100 + b"]" * 100 + b"}", None),
    "lone surrogate cid": (
        b'{"client_event_id": "\\ud800", "seq": 0, "action": "reset"}',
        "client_event_id",
    ),
    "NUL cid": (
        b'{"client_event_id": "a\\u0000b", "seq": 0, "action": "reset"}',
        "client_event_id",
    ),
    "not UTF-8": (b'{"client_event_id": "\xff\xfe", "seq": 0}', None),
    "not JSON": (b"{'client_event_id': 1", None),
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_event_bodies_answer_400_naming_the_field(pc, name):
    raw, field = HOSTILE_BODIES[name]
    HOSTILE_CASES.append(name)
    response = _raw_post(pc, f"assignments/{_assignment(pc).pk}/events", raw)
    assert response.status_code == 400, (name, response.status_code, response.content[:300])
    body = response.json()
    assert "error" in body
    if field:
        assert body.get("field") == field, body
    assert PromptEvent.objects.count() == 0


@pytest.mark.parametrize(
    "answers, field",
    [
        ('{"q": "\\ud800"}', "answers.q"),
        ('{"q": 1e999}', "answers.q"),
        ('{"q": "a\\u0000"}', "answers.q"),
        ('{"\\udfff": "yes"}', "answers.<key>"),
    ],
)
def test_hostile_survey_answers_answer_400(pc, answers, field):
    HOSTILE_CASES.append(f"survey {answers}")
    assignment = _assignment(pc)
    assignment.status = "finished"
    assignment.save()
    response = _raw_post(
        pc, f"assignments/{assignment.pk}/survey", b'{"answers": ' + answers.encode() + b"}"
    )
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assignment.refresh_from_db()
    assert assignment.survey_answers is None


def test_body_over_the_endpoint_cap_is_a_json_413_before_reading(pc):
    HOSTILE_CASES.append("3 MB event body")
    # an event may carry a shown mask's RLE (up to MAX_RLE_CHARS): the cap is above that
    body = json.dumps(_event(pad="x" * 3_000_000)).encode()
    response = _raw_post(pc, f"assignments/{_assignment(pc).pk}/events", body)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "at most" in response.json()["error"]
    assert PromptEvent.objects.count() == 0


def test_body_over_the_site_limit_is_json_too(pc, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _raw_post(
        pc, "participants/me/consent", json.dumps({"version": "x" * 2000}).encode()
    )
    assert response.status_code == 413
    assert "at most 1000" in response.json()["error"]


@pytest.mark.parametrize(
    "query",
    ["PROLIFIC_PID=" + "p" * 101, "PROLIFIC_PID=a%00b", "SESSION_ID=" + "s" * 500, "t=%00"],
)
def test_join_with_a_bad_crowd_id_is_a_400_page(client, query):
    HOSTILE_CASES.append(f"join {query[:30]}")
    study = prompting_study(n_images=1, participants=0)
    response = client.get(f"/s/{study.pk}/join?{query}")
    assert response.status_code == 400
    assert b"not valid" in response.content
    assert Participant.objects.count() == 0


def test_30_digit_seed_on_the_baselines_form_is_a_message(client):
    study = prompting_study(n_images=1, participants=0)
    client.force_login(study.owner)
    response = client.post(
        f"/studies/{study.pk}/analysis/baselines",
        {"strategy": ["random"], "seed": "9" * 30},
        follow=True,
    )
    assert response.status_code == 200
    assert b"seed must be an integer" in response.content
    assert not study.jobs.filter(kind="baseline").exists()  # (the page's own analysis job aside)
    assert researcher  # the owner fixture made by prompting_study
