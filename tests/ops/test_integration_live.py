"""Against the real services: PostgreSQL, Redis, gunicorn and one Celery worker per queue.

The whole prompting flow over HTTP with the predictions computed by a real `interactive` worker
(not eager), then many concurrent annotators (with duplicated requests) on several gunicorn
workers: every timestep is stored exactly once and in order. Skipped, with the reason, only
when PostgreSQL or Redis is not reachable.
"""

from __future__ import annotations

import io
import json
import random
import threading
import uuid

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.live_stack import Annotator, LiveStack, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGNATION_LIMIT = 2


@pytest.fixture(scope="module")
def stack():
    reason = services_missing()
    if reason:
        print(f"SKIP integration: {reason}")
        pytest.skip(reason)
    with LiveStack(
        participants=10,
        images=2,
        web_workers=3,
        protocol={"stagnation_limit": STAGNATION_LIMIT},
        embed=True,
    ) as live:
        yield live


def inside_outside(
    annotator: Annotator, ground_truth_url: str
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The pixel deepest inside the ground-truth object and background pixels far from it (x, y)."""
    url = (
        ground_truth_url
        if ground_truth_url.startswith("http")
        else annotator.base_url + ground_truth_url
    )
    response = annotator.http.get(url, timeout=30)
    assert response.status_code == 200, response.text[:300]
    gt = np.asarray(Image.open(io.BytesIO(response.content)).convert("L")) > 127
    inside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(gt)), gt.shape)
    far = ndimage.distance_transform_edt(~gt)
    ys, xs = np.nonzero(far > 8)
    order = np.random.default_rng(0).permutation(len(xs))
    return (int(inside[1]), int(inside[0])), [(int(xs[i]), int(ys[i])) for i in order[:60]]


def test_full_flow_on_real_services_stores_every_timestep_once(stack):
    annotator = stack.annotator(0)
    me = annotator.get("participants/me").json()
    assert me["consented"] is False
    aid = me["assignments"][0]["id"]
    refused = annotator.send(aid, annotator.body(aid, "add", "green", 5, 5))
    assert refused.status_code == 403, refused.text
    assert annotator.post("participants/me/consent", {"version": "1"}).status_code == 200

    inside, background = inside_outside(annotator, me["assignments"][0]["ground_truth_url"])
    first = annotator.body(aid, "add", "green", *inside)
    answer = annotator.send(aid, first)
    assert answer.status_code == 200, answer.text
    assert answer.json()["timestep"] is None  # no red point yet: no prediction
    replay = annotator.post(f"assignments/{aid}/events", first)
    assert replay.status_code == 200 and replay.json() == answer.json()
    stale = annotator.post(
        f"assignments/{aid}/events", {**first, "client_event_id": "stale", "seq": 0}
    )
    assert stale.status_code == 409 and stale.json()["expected_seq"] == 1
    outside = annotator.post(
        f"assignments/{aid}/events", annotator.body(aid, "add", "green", 10_000, 5)
    )
    assert outside.status_code == 400 and "x" in outside.json()["error"]
    foreign = stack.study["participants"][1]["assignments"][0]
    assert (
        annotator.post(
            f"assignments/{foreign}/events", annotator.body(foreign, "add", "green", 5, 5)
        ).status_code
        == 404
    )

    answers = [answer.json()]
    rounds_ended = 0
    has_green = True
    for step in range(40):
        last = answers[-1]
        if last["finished"]:
            break
        if last["round_ended"]:
            has_green = False  # a new round starts from no points
        if not has_green:
            body = annotator.body(aid, "add", "green", *inside)
            has_green = True
        else:
            body = annotator.body(aid, "add", "red", *background[step % len(background)])
        response = annotator.send(aid, body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
        rounds_ended += bool(answers[-1]["round_ended"])
    final = answers[-1]
    assert final["finished"] is True and final["stop_reason"] == "stagnation", final
    assert rounds_ended == 2  # round 1 ended, round 2 started from no points, round 2 ended
    timesteps = [a for a in answers if a["timestep"] is not None]
    assert [a["timestep"] for a in timesteps] == list(range(len(timesteps)))
    assert max(a["iou"] for a in timesteps) > 0.5  # the classical backend finds the object
    assert {a["round"] for a in timesteps} == {1, 2}

    rows = stack.sql(
        "SELECT seq, client_event_id, timestep, round, iou, mask_rle, model_id, green, red FROM studies_promptevent "
        "WHERE assignment_id = %s ORDER BY seq",
        (aid,),
    )
    assert [r[0] for r in rows] == list(range(len(answers)))
    assert [r[1] for r in rows] == [a["client_event_id"] for a in answers]
    stored = [r for r in rows if r[2] is not None]
    assert [r[2] for r in stored] == [a["timestep"] for a in timesteps]
    for row, a in zip(stored, timesteps, strict=True):
        assert row[3] == a["round"] and row[4] == pytest.approx(a["iou"])
        assert row[5] == a["mask_rle"] and row[6].startswith("classical")
        assert row[7] == a["green"] and row[8] == a["red"]
    status = stack.sql(
        "SELECT status, stop_reason, next_seq FROM studies_assignment WHERE id = %s", (aid,)
    )[0]
    assert status == ("finished", "stagnation", len(answers))
    # The predictions ran on the interactive worker process (not eagerly in the web).
    log = stack.worker("interactive").text()
    assert log.count("workers.tasks.predict_mask[") >= 2 * len(timesteps)  # received + succeeded
    assert stack.audit()["problems"] == []


def test_many_annotators_on_several_web_and_worker_processes_store_each_timestep_once(stack):
    """8 annotators in parallel threads over 3 gunicorn workers; a quarter of the requests are
    sent twice at once (a double click / a retry racing the first try)."""
    annotators = [stack.annotator(i) for i in range(2, 10)]
    for a in annotators:
        assert a.post("participants/me/consent", {"version": "1"}).status_code == 200
    acknowledged: dict[str, dict] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def session(index: int, annotator: Annotator) -> None:
        rng = random.Random(index)
        queue = list(annotator.assignments)
        aid = queue.pop(0)
        for step in range(8):
            mode = "green" if step % 3 == 0 else "red"
            body = annotator.body(
                aid, "add", mode, rng.randrange(annotator.width), rng.randrange(annotator.height)
            )
            if rng.random() < 0.25:
                results: list = []
                path = f"assignments/{aid}/events"
                twins = [
                    threading.Thread(
                        target=lambda p=path, b=body, r=results: r.append(annotator.post(p, b))
                    )
                    for _ in range(2)
                ]
                for t in twins:
                    t.start()
                for t in twins:
                    t.join()
                ok = [r for r in results if r.status_code == 200]
                if len(ok) != 2 or ok[0].json() != ok[1].json():
                    with lock:
                        failures.append(
                            f"duplicate pair answered {[r.status_code for r in results]}: {[r.text[:200] for r in results]}"
                        )
                    return
                annotator.seq[aid] = body["seq"] + 1
                response = ok[0]
            else:
                response = annotator.send(aid, body)
            if response.status_code != 200:
                with lock:
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                return
            with lock:
                acknowledged[body["client_event_id"]] = response.json()
            if response.json()["finished"]:  # stagnation ended the image: go on with the next one
                if not queue:
                    return
                aid = queue.pop(0)

    threads = [threading.Thread(target=session, args=(i, a)) for i, a in enumerate(annotators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "annotator threads did not finish in 300 s"
    assert failures == []
    assert len(acknowledged) >= 8 * 6  # an annotator stops early only when both images ended

    audit = stack.audit()
    assert audit["problems"] == []
    assert set(acknowledged) <= audit["client_event_ids"]
    ids = [aid for a in annotators for aid in a.assignments]
    count = stack.sql(
        "SELECT count(*) FROM studies_promptevent WHERE assignment_id = ANY(%s)", (ids,)
    )[0][0]
    assert count == len(acknowledged)
    # each stored answer is the acknowledged one (no second computation overwrote it)
    stored = dict(
        stack.sql(
            "SELECT client_event_id, response FROM studies_promptevent WHERE assignment_id = ANY(%s)",
            (ids,),
        )
    )
    assert all(
        stored[cid]["mask_rle"] == ans["mask_rle"] and stored[cid]["seq"] == ans["seq"]
        for cid, ans in acknowledged.items()
    )

    # Both queues were served by their own worker process; queue_status sees both, queues empty.
    assert "workers.tasks.embed_image[" in stack.worker("batch").text()
    assert "workers.tasks.embed_image[" not in stack.worker("interactive").text()
    report = json.loads(
        stack.manage("queue_status", "--json", "--timeout", "3").strip().splitlines()[-1]
    )
    assert report["queues"] == {"interactive": 0, "batch": 0}
    assert len(report["serving"]["interactive"]) == 1 and len(report["serving"]["batch"]) == 1
    assert report["serving"]["interactive"] != report["serving"]["batch"]
    text = stack.manage("queue_status")
    assert "interactive" in text and "batch" in text and "no live worker" not in text


def test_healthz_reports_database_and_broker(stack):
    import requests

    body = requests.get(
        f"{stack.base_url}/healthz", headers=stack.healthz_headers, timeout=10
    ).json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["vendor"] == "postgresql"
    assert (
        body["checks"]["broker"]["ok"] is True
        and "redis" in body["checks"]["broker"]["transport"].lower()
    )


def test_unique_client_event_ids_are_not_shared_between_assignments(stack):
    """The same client_event_id on two different assignments is two different events."""
    annotator = stack.annotator(1)
    assert annotator.post("participants/me/consent", {"version": "1"}).status_code == 200
    cid = uuid.uuid4().hex
    a1, a2 = annotator.assignments[:2]
    assert annotator.send(a1, annotator.body(a1, "add", "green", 3, 3, cid=cid)).status_code == 200
    assert annotator.send(a2, annotator.body(a2, "add", "green", 3, 3, cid=cid)).status_code == 200
    rows = stack.sql(
        "SELECT assignment_id FROM studies_promptevent WHERE client_event_id = %s ORDER BY assignment_id",
        (cid,),
    )
    assert [r[0] for r in rows] == sorted([a1, a2])
