"""Faults with the real processes: a Celery worker SIGKILLed mid-task, Redis stopped and
restarted, PostgreSQL connections dropped mid-request. In every case the participant's request
fails cleanly (503, nothing stored) or succeeds, the retry with the same client_event_id
succeeds, and every timestep is stored exactly once.

The stack has its own redis-server (so stopping it disturbs no one) and its workers run with
INTERVENE_PREDICT_DELAY_S (workers/tasks.py), so a timestep takes long enough to be interrupted.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
import requests

from tests.live_stack import Annotator, LiveStack, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELAY_S = 1.5
TIMEOUT_S = 8.0


@pytest.fixture(scope="module")
def stack():
    reason = services_missing()
    if reason:
        print(f"SKIP integration: {reason}")
        pytest.skip(reason)
    with LiveStack(
        participants=5,
        images=1,
        private_redis=True,
        interactive_timeout_s=TIMEOUT_S,
        worker_env={"INTERVENE_PREDICT_DELAY_S": str(DELAY_S)},
        consented=True,
        protocol={"stagnation_limit": 1000},
    ) as live:
        yield live


def ready_for_prediction(annotator: Annotator) -> tuple[int, dict]:
    """Put one green point (no prediction yet); the next red point makes a timestep."""
    aid = annotator.assignments[0]
    assert annotator.send(aid, annotator.body(aid, "add", "green", 60, 60)).status_code == 200
    return aid, annotator.body(aid, "add", "red", 3, 3)


def post_in_background(annotator: Annotator, aid: int, body: dict) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(
        target=lambda: out.append(annotator.post(f"assignments/{aid}/events", body))
    )
    thread.start()
    return thread, out


def received(proc) -> list[str]:
    return re.findall(r"Task workers\.tasks\.predict_mask\[([0-9a-f-]+)\] received", proc.text())


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def retry_until_ok(
    annotator: Annotator, aid: int, body: dict, timeout: float = 60.0
) -> requests.Response:
    """What a client does after a 503: the same body (same client_event_id) again, with backoff."""
    deadline = time.monotonic() + timeout
    codes = []
    while True:
        try:
            response = annotator.post(f"assignments/{aid}/events", body)
            codes.append(response.status_code)
            if response.status_code == 200:
                annotator.seq[aid] = body["seq"] + 1
                return response
            assert response.status_code == 503, response.text
        except requests.RequestException as exc:
            codes.append(type(exc).__name__)
        if time.monotonic() > deadline:
            raise AssertionError(f"no success within {timeout} s of retries: {codes}")
        time.sleep(0.5)


def stored(stack: LiveStack, aid: int, cid: str) -> int:
    return stack.sql(
        "SELECT count(*) FROM studies_promptevent WHERE assignment_id = %s AND client_event_id = %s",
        (aid, cid),
    )[0][0]


def test_pool_process_sigkilled_mid_task_is_redelivered_and_stored_once(stack):
    annotator = stack.annotator(0)
    aid, body = ready_for_prediction(annotator)
    worker = stack.worker("interactive")
    before = len(received(worker))
    thread, out = post_in_background(annotator, aid, body)
    wait_for(lambda: len(received(worker)) > before, 20, "the worker to receive the task")
    time.sleep(DELAY_S / 3)  # inside the task now
    children = stack.pool_children(worker)
    assert children, "the prefork worker has no pool process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    thread.join(60)
    response = out[0] if out and out[0].status_code == 200 else retry_until_ok(annotator, aid, body)
    assert response.status_code == 200 and response.json()["timestep"] == 0
    # The same task id was received again (reject_on_worker_lost + acks_late) and succeeded once.
    wait_for(lambda: "succeeded" in worker.text(), 20, "the redelivered task to succeed")
    ids = received(worker)[before:]
    assert any(ids.count(i) >= 2 for i in ids), (
        f"no redelivery seen in the worker log: {ids}\n{worker.tail()}"
    )
    assert "SIGKILL" in worker.text() or "WorkerLostError" in worker.text()
    assert stored(stack, aid, body["client_event_id"]) == 1
    assert stack.audit()["problems"] == []


def test_whole_worker_sigkilled_mid_task_then_replaced_client_retry_is_stored_once(stack):
    annotator = stack.annotator(1)
    aid, body = ready_for_prediction(annotator)
    worker = stack.worker("interactive")
    before = len(received(worker))
    thread, out = post_in_background(annotator, aid, body)
    wait_for(lambda: len(received(worker)) > before, 20, "the worker to receive the task")
    time.sleep(DELAY_S / 3)
    worker.kill()  # main process and pool together: no one is left to requeue the message
    thread.join(TIMEOUT_S + 30)
    assert out and out[0].status_code == 503, out[0].text if out else "no answer"
    assert "retry with the same client_event_id" in out[0].json()["error"]
    assert stored(stack, aid, body["client_event_id"]) == 0  # nothing half-stored
    replacement = stack.start_worker("interactive")
    stack.wait_ready(replacement)
    response = retry_until_ok(annotator, aid, body)
    assert response.json()["timestep"] == 0
    assert annotator.post(f"assignments/{aid}/events", body).json() == response.json()  # replay
    assert stored(stack, aid, body["client_event_id"]) == 1
    assert stack.audit()["problems"] == []


def test_redis_stopped_and_restarted_gives_503_then_the_retry_succeeds(stack):
    annotator = stack.annotator(2)
    aid, body = ready_for_prediction(annotator)
    stack.stop_redis()
    try:
        started = time.monotonic()
        response = annotator.post(f"assignments/{aid}/events", body)
        assert response.status_code == 503, response.text
        assert "retry with the same client_event_id" in response.json()["error"]
        assert time.monotonic() - started < TIMEOUT_S + 15
        health = requests.get(f"{stack.base_url}/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["checks"]["broker"]["ok"] is False
        assert health.json()["checks"]["database"]["ok"] is True
        assert stored(stack, aid, body["client_event_id"]) == 0
        assert (
            stack.sql("SELECT next_seq FROM studies_assignment WHERE id = %s", (aid,))[0][0]
            == body["seq"]
        )
    finally:
        stack.start_redis()  # same port: the web and the workers reconnect by themselves
    response = retry_until_ok(annotator, aid, body, timeout=90)
    assert response.json()["timestep"] == 0
    following = annotator.send(aid, annotator.body(aid, "add", "red", 5, 120))
    assert following.status_code == 200 and following.json()["timestep"] == 1
    assert stored(stack, aid, body["client_event_id"]) == 1
    assert stack.audit()["problems"] == []


def test_postgresql_connections_dropped_mid_request_give_503_then_the_retry_succeeds(stack):
    annotator = stack.annotator(3)
    aid, body = ready_for_prediction(annotator)
    worker = stack.worker("interactive")
    before = len(received(worker))
    thread, out = post_in_background(annotator, aid, body)
    wait_for(lambda: len(received(worker)) > before, 20, "the worker to receive the task")
    assert stack.terminate_connections() >= 1  # the web's connection, held while it waits
    thread.join(TIMEOUT_S + 30)
    assert out, "no answer"
    print(f"request during the drop answered {out[0].status_code}: {out[0].text[:120]}")
    assert out[0].status_code in (200, 503), out[0].text
    if out[0].status_code == 503:
        assert "database is unavailable" in out[0].json()["error"]
        assert stored(stack, aid, body["client_event_id"]) == 0
    response = retry_until_ok(annotator, aid, body)
    assert response.json()["timestep"] == 0
    assert stored(stack, aid, body["client_event_id"]) == 1
    # Dropped between requests: persistent connections are health-checked and replaced.
    stack.terminate_connections()
    following = annotator.send(aid, annotator.body(aid, "add", "red", 5, 120))
    assert following.status_code == 200, following.text
    assert stack.audit()["problems"] == []
