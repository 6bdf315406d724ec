"""A tidy export taken while participants click reads one snapshot: events.csv, timesteps.csv
and masks.jsonl name the same timesteps, row for row (issue 25).

Real stack (PostgreSQL, gunicorn, Celery): three participants click in threads while the export
runs in its own process; the export pauses after each table (tests/live_stack.py `_export`) so
clicks surely land between its tables. Under READ COMMITTED the tables then disagree."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import zipfile

import pytest

from tests.live_stack import LiveStack, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def clicker(annotator, stop: threading.Event, errors: list) -> None:
    aid = annotator.assignments[0]
    modes = ("green", "red")
    i = 0
    try:
        while not stop.is_set():
            x, y = (
                (8 + 7 * i) % max(annotator.width - 8, 9),
                (5 + 11 * i) % max(annotator.height - 5, 6),
            )
            response = annotator.send(aid, annotator.body(aid, "add", modes[i % 2], x, y))
            if response.status_code != 200:
                errors.append((response.status_code, response.text[:200]))
                return
            i += 1
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(repr(exc))


def keys(rows) -> set[tuple[int, int]]:
    return {(int(r["assignment_id"]), int(r["timestep"])) for r in rows}


def test_tidy_tables_agree_row_for_row_while_participants_click():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    with LiveStack(
        participants=3, images=1, consented=True, protocol={"stagnation_limit": 100000}
    ) as stack:
        stop, errors = threading.Event(), []
        threads = [
            threading.Thread(target=clicker, args=(stack.annotator(i), stop, errors))
            for i in range(3)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(3.0)  # some timesteps before the export starts
            out = stack.tmp / "tidy.zip"
            stack.script(
                "export", {"study": stack.study["id"], "out": str(out), "pause_s": 1.5}, timeout=120
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not errors, errors
        with zipfile.ZipFile(out) as z:
            events = list(csv.DictReader(io.StringIO(z.read("events.csv").decode())))
            timesteps = list(csv.DictReader(io.StringIO(z.read("timesteps.csv").decode())))
            masks = [json.loads(line) for line in z.read("masks.jsonl").decode().splitlines()]
        in_events = keys(r for r in events if r["timestep"] not in ("", None))
        in_timesteps, in_masks = keys(timesteps), keys(masks)
        stored = stack.audit()["timesteps"]
        print(
            f"events.csv {len(in_events)} timesteps, timesteps.csv {len(in_timesteps)}, "
            f"masks.jsonl {len(in_masks)}; stored after the clicks stopped {stored}"
        )
        assert in_events, "no timestep was exported: the clicks did not make any"
        assert stored > len(in_events), "no click landed during the export: nothing was tested"
        assert in_timesteps == in_events, (
            f"timesteps.csv vs events.csv: {len(in_timesteps - in_events)} only in timesteps.csv, "
            f"{len(in_events - in_timesteps)} only in events.csv"
        )
        assert in_masks == in_events, (
            f"masks.jsonl vs events.csv: {len(in_masks - in_events)} only in masks.jsonl, "
            f"{len(in_events - in_masks)} only in events.csv"
        )
        # the batch task's path: progress written on its own connection while the export reads
        # its READ ONLY snapshot (a write on the snapshot's connection would fail the job)
        out = stack.manage(
            "shell",
            "-c",
            "from studies.models import Job; from workers.export_tasks import export_study; "
            f"job = Job.objects.create(kind='export', study_id={stack.study['id']}, "
            "params={'format': 'tidy'}); export_study.run(job.pk); job.refresh_from_db(); "
            "print('JOB', job.status, job.done, job.total, job.progress, job.error[:300])",
        )
        line = next(x for x in out.splitlines() if x.startswith("JOB"))
        status, done, total, progress = line.split()[1:5]
        assert status == "done" and int(done) == int(total) > 0 and float(progress) == 1.0, line
