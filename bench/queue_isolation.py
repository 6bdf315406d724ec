"""Click latency while a researcher's data set import runs, in the two worker layouts (issue 25):
`own` (one worker process per queue, as docker/compose.yaml starts them) and `shared` (one worker
consuming both queues, the former compose default). Live stack: gunicorn, Celery, PostgreSQL,
Redis; classical backend (a click is a real `interactive` task).

Per layout: idle clicks first (the baseline, same process), then the archive is uploaded
through the upload page and clicks are sent one after the other while the import job runs (the
job row is read before and after each click). Prints ONE JSON line: per layout the idle p50,
the clicks during the import (p50 / p95 / max ms, how many were answered while the job was
still running), the import's duration, and the ratio of the shared layout's first click to the
own layout's p95.

    .venv/bin/python bench/queue_isolation.py [--pairs 240] [--clicks 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.batch_load import (  # noqa: E402
    PROTOCOL,
    ClickSession,
    Researcher,
    import_archive_bytes,
    job_state,
    wait_until_running,
)
from tests.live_stack import LiveStack, services_missing  # noqa: E402


def ms(values: list[float], q: float) -> float:
    return (
        round(float(np.percentile(np.asarray(values) * 1000.0, q)), 1) if values else float("nan")
    )


def run_layout(queues: tuple[str, ...], archive: bytes, clicks: int, idle: int) -> dict:
    with LiveStack(
        participants=1,
        images=1,
        protocol=PROTOCOL,
        consented=True,
        queues=queues,
        web_threads=4,
        interactive_timeout_s=600.0,
    ) as stack:
        session = ClickSession(stack.annotator(0))
        session.start()
        baseline = []
        for i in range(idle + 3):
            elapsed, response = session.click()
            if response.status_code != 200:
                raise RuntimeError(f"idle click answered {response.status_code}")
            if i >= 3:  # the first clicks load the backend
                baseline.append(elapsed)
        job_id = Researcher(stack.base_url).upload(archive, "bench load")
        started = time.monotonic()
        wait_until_running(stack, job_id)
        during, answered_while_running = [], 0
        while len(during) < clicks and job_state(stack, job_id)["status"] == "running":
            elapsed, response = session.click()
            if response.status_code != 200:
                raise RuntimeError(f"click answered {response.status_code}: {response.text[:200]}")
            during.append(elapsed)
            answered_while_running += job_state(stack, job_id)["status"] == "running"
        while job_state(stack, job_id)["status"] in ("queued", "running"):
            time.sleep(0.1)
        import_s = time.monotonic() - started
        status = job_state(stack, job_id)["status"]
        if status != "done":
            raise RuntimeError(f"the import ended {status}")
    return {
        "queues": list(queues),
        "idle_p50_ms": ms(baseline, 50),
        "clicks_during_import": len(during),
        "answered_while_import_ran": answered_while_running,
        "during_p50_ms": ms(during, 50),
        "during_p95_ms": ms(during, 95),
        "during_max_ms": ms(during, 100),
        "first_click_ms": round(during[0] * 1000.0, 1) if during else None,
        "import_s": round(import_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=240, help="image/mask pairs in the import")
    parser.add_argument("--clicks", type=int, default=10, help="clicks sent during the import")
    parser.add_argument("--idle", type=int, default=10, help="baseline clicks before it")
    args = parser.parse_args()
    reason = services_missing()
    if reason:
        raise SystemExit(f"queue_isolation needs the real services: {reason}")
    archive = import_archive_bytes(args.pairs)
    own = run_layout(("interactive", "batch"), archive, args.clicks, args.idle)
    shared = run_layout(("interactive,batch",), archive, args.clicks, args.idle)
    print(
        json.dumps(
            {
                "bench": "queue_isolation",
                "pairs": args.pairs,
                "archive_mb": round(len(archive) / 1e6, 1),
                "own": own,
                "shared": shared,
                "shared_first_over_own_p95": round(
                    shared["first_click_ms"] / max(own["during_p95_ms"], 1e-9), 1
                ),
                "own_during_over_idle_p50": round(
                    own["during_p50_ms"] / max(own["idle_p50_ms"], 1e-9), 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
