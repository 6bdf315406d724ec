"""Fuzz every endpoint of the API with schemathesis, longer than the test does.

Starts the embedded stack in a subprocess (`manage.py runserver`, SQLite in a temporary folder,
in-process Celery: what `make demo` runs), creates a prompting and an intervention study with a
consented participant each and a researcher, then sends `--examples` generated requests per
operation of /api/v1/schema/ (seeded), half of them with real ids and the signed-in session.
Also times a hostile body: a 2 MB compressed RLE of one endless run posted as a trial (the
quadratic decoder took minutes of CPU on it).

Prints ONE JSON line: endpoints, cases, 5xx count, schema failures, the slowest answer, the
hostile body's answer time.

    .venv/bin/python bench/fuzz_api.py [--examples 300] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.api_fuzz import fuzz  # noqa: E402
from tests.live_stack import free_port  # noqa: E402

SETUP = """
import json
from pathlib import Path
from django.utils import timezone
from studies.models import Assignment
from tests.factories import prompting_study
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights
prompting = prompting_study(n_images=1, participants=1)
weights = random_demo_weights(Path({folder!r}))
intervention = intervention_study(classifier_spec(weights), n_images=1, overlay="gradcam")
for study in (prompting, intervention):
    study.participants.update(consent_version=study.consent_version, consented_at=timezone.now())
owner = prompting.owner
owner.set_password("fuzz-the-api-123")
owner.save()
print(json.dumps({{
    "username": owner.username,
    "prompting": prompting.participants.get().token,
    "intervention": intervention.participants.get().token,
    "assignments": list(Assignment.objects.values_list("pk", flat=True)),
    "studies": [prompting.pk, intervention.pk],
    "trial_assignment": intervention.participants.get().assignments.get().pk,
    "size": [intervention.dataset.images.first().height, intervention.dataset.images.first().width],
}}))
"""


def quadratic_total(counts: bytes) -> int:
    """The decoder this platform had before (baseline): one run's value grows a big integer
    character by character, so one endless run costs O(n^2)."""
    total, i, n = 0, 0, len(counts)
    while i < n:
        x, k, more = 0, 0, True
        while more:
            c = counts[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
        total += x
    return total


def decoder_ratio(chars: int = 200_000) -> dict:
    """Seconds to refuse one endless run of `chars` characters: old decoder vs the new one."""
    from interventions.metrics import compressed_runs

    hostile = b"o" * (chars - 1) + b"0"
    started = time.perf_counter()
    quadratic_total(hostile)
    old = time.perf_counter() - started
    started = time.perf_counter()
    try:
        compressed_runs(hostile, 1000 * 1000)
    except ValueError:
        pass
    new = time.perf_counter() - started
    return {
        "chars": chars,
        "old_s": round(old, 3),
        "new_s": round(new, 5),
        "speedup": round(old / new, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_"))},
            "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "MEDIA_ROOT": f"{folder}/media",
            "DJANGO_DEBUG": "0",
            "PYTHONPATH": str(ROOT),
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run(
            [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True
        )
        made = subprocess.run(
            [*manage, "shell", "-c", SETUP.format(folder=folder)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(made.stdout.strip().splitlines()[-1])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(150):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            session = requests.Session()
            page = session.get(f"{base}/accounts/login/").text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            session.post(
                f"{base}/accounts/login/",
                allow_redirects=False,
                data={
                    "username": data["username"],
                    "password": "fuzz-the-api-123",
                    "csrfmiddlewaretoken": token,
                },
            )

            def headers_for(path: str) -> dict:
                if "/exports" in path:
                    return {"X-CSRFToken": session.cookies.get("csrftoken", "")}
                kind = (
                    "intervention"
                    if re.search(r"trials|intervention|overlay", path)
                    else ("prompting")
                )
                return {"Authorization": f"Bearer {data[kind]}"}

            hostile = {
                "client_event_id": "h",
                "seq": 0,
                "operation": "delete",
                "substrate": "zero",
                "region_rle": {"size": data["size"], "counts": "o" * 1_999_999 + "0"},
            }
            started = time.perf_counter()
            answer = requests.post(
                f"{base}/api/v1/assignments/{data['trial_assignment']}/trials",
                json=hostile,
                headers={"Authorization": f"Bearer {data['intervention']}"},
                timeout=600,
            )
            hostile_s = time.perf_counter() - started

            started = time.perf_counter()
            report = fuzz(
                base,
                headers_for,
                examples=args.examples,
                seed=args.seed,
                session=session,
                real_ids={
                    "assignment_id": data["assignments"],
                    "study_id": data["studies"],
                    "route": ["events", "trials", "ratings"],
                },
            )
            took = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        json.dumps(
            {
                "bench": "fuzz_api",
                "examples_per_operation": args.examples,
                "seed": args.seed,
                **report.as_dict(),
                "seconds": round(took, 1),
                "hostile_rle_2mb": {"status": answer.status_code, "seconds": round(hostile_s, 3)},
                "endless_run_decoder": decoder_ratio(),
                "first_failures": report.failures[:3],
            }
        )
    )


if __name__ == "__main__":
    main()
