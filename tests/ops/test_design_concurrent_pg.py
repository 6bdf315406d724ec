"""100 concurrent consents into a two-arm between-participants study on the live stack
(PostgreSQL, gunicorn with several workers and threads, Redis, a real Celery worker), issue 22:
the arm sizes differ by at most the block size, nobody is left without an arm, no arm passes
its target, the randomisation log is the seeded sequence in consent order, and each arm's
participants then work in their arm's protocol (predictions from the real worker)."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from studies.core import design
from studies.core.kinds import get_kind
from tests.live_stack import LiveStack, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 100
PLAN = {
    "assignment": "between",
    "seed": 11,
    "block_size": 4,
    "arms": [
        {"name": "score shown", "options": {"show_score": True}, "target": 60},
        {"name": "score hidden", "options": {"show_score": False}, "target": 60},
    ],
}


def test_hundred_concurrent_consents_keep_the_arms_balanced():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    with LiveStack(
        participants=N, images=1, web_workers=4, web_threads=4, design=PLAN, queues=("interactive",)
    ) as stack:
        people = [stack.annotator(i) for i in range(N)]
        barrier = threading.Barrier(N)
        answers: list = [None] * N

        def consent(i: int) -> None:
            barrier.wait(30)
            try:
                answers[i] = people[i].post("participants/me/consent", {"version": "1"})
            except Exception as exc:  # noqa: BLE001 (reported by the assertion)
                answers[i] = exc

        threads = [threading.Thread(target=consent, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        failed = [a if isinstance(a, Exception) else (a.status_code, a.text[:200])
                  for a in answers if isinstance(a, Exception) or a.status_code != 200]  # fmt: skip
        assert not failed, failed[:5]

        state = stack.script("allocations", {"study": stack.study["id"]})
        state = json.loads(state.strip().splitlines()[-1])
        arms = Counter(p["arm"] for p in state["participants"])
        print(f"arm sizes after {N} concurrent consents: {dict(arms)}")
        assert sum(arms.values()) == N and "" not in arms  # everyone has an arm
        assert abs(arms["score shown"] - arms["score hidden"]) <= PLAN["block_size"]
        assert max(arms.values()) <= 60
        log = state["log"]
        assert [e["sequence"] for e in log] == list(range(1, N + 1))
        plan = design.validate_design(get_kind("prompting"), PLAN)
        assert [(e["arm"], e["block"]) for e in log] == design.replay_between(plan, N)
        by_code = {p["code"]: p["arm"] for p in state["participants"]}
        assert {e["participant__code"]: e["arm"] for e in log} == by_code

        # each arm runs its protocol: the score comes back only in "score shown"
        for arm in ("score shown", "score hidden"):
            index = next(
                i for i, p in enumerate(stack.study["participants"]) if by_code[p["code"]] == arm
            )
            a = people[index]
            me = a.get("participants/me").json()
            assert me["study"]["show_score"] is (arm == "score shown")
            aid = me["assignments"][0]["id"]
            assert (
                a.send(aid, a.body(aid, "add", "green", a.width // 2, a.height // 2)).status_code
                == 200
            )
            answer = a.send(aid, a.body(aid, "add", "red", 1, 1))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["timestep"] == 0
            assert (body["iou"] is None) is (arm == "score hidden"), body
