"""The embedded default (in-process Celery, SQLite, `runserver`'s threads: `make demo`) serves
several people at once (issue 11, finding 11). Concurrent clicks were 503s: Celery's eager
`apply` flips a process-wide flag that another thread's `get()` checks ("Never call
result.get() within a task"), and SQLite's deferred transactions failed at once with
"database is locked" instead of waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.live_stack import free_port

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import json
from django.utils import timezone
from tests.factories import prompting_study
study = prompting_study(n_images=1, participants=6)
study.participants.update(consent_version=study.consent_version, consented_at=timezone.now())
print(json.dumps([[p.token, p.assignments.get().pk] for p in study.participants.all()]))
"""


def _post(url: str, token: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_demo_server_answers_concurrent_participants_without_503(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_"))},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "DJANGO_DEBUG": "0",
        "PYTHONPATH": str(ROOT),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    made = subprocess.run(
        [*manage, "shell", "-c", SETUP],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    people = json.loads(made.stdout.strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
        answers: list[tuple[int, bytes]] = []
        lock = threading.Lock()
        start = threading.Barrier(len(people))

        def clicks(token: str, assignment_id: int) -> None:
            url = f"{base}/api/v1/assignments/{assignment_id}/events"
            start.wait()
            for seq in range(4):
                body = {
                    "client_event_id": f"{token[:8]}-{seq}",
                    "seq": seq,
                    "action": "add",
                    "mode": "green" if seq % 2 == 0 else "red",
                    "x": 3 + seq,
                    "y": 4 + seq,
                }
                answer = _post(url, token, body)
                with lock:
                    answers.append(answer)

        threads = [threading.Thread(target=clicks, args=(t, a)) for t, a in people]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=20)
    bad = [a for a in answers if a[0] != 200]
    assert not bad and len(answers) == len(people) * 4, bad[:3]
