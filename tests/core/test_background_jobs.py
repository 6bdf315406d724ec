"""Background jobs on the embedded default (eager Celery): the request that starts a job
returns at once, the job runs on the server process's background thread with its progress
visible, and a job left queued or running by a stopped server is failed at the next start
(studies/core/background.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections, transaction
from django.utils import timezone

from studies.core import background
from studies.models import BaselineResult, Job, TrustEvaluation
from tests.export_sessions import run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db(transaction=True)  # the job's thread reads committed rows
WAIT_S = 60


@pytest.fixture
def study():
    study = prompting_study(n_images=3, participants=1)
    run_sessions(study, seed=2)
    return study


def gate(monkeypatch, module, name, after: int):
    """Let `after` calls of module.name through, then hold the next until `release` is set."""
    original = getattr(module, name)
    reached, release = threading.Event(), threading.Event()
    calls = []

    def gated(*args, **kwargs):
        calls.append(1)
        if len(calls) == after + 1:
            reached.set()
            assert release.wait(WAIT_S), "the test never released the job"
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, gated)
    return reached, release


def test_starting_baselines_returns_before_the_job_and_the_page_follows_it(
    client, study, background_jobs, monkeypatch
):
    import interventions.segmentation.batching as batching

    # the job goes image by image (decode, then store in one transaction): hold the second
    # image's decode, outside any transaction, so the page's own writes go through
    reached, release = gate(monkeypatch, batching, "predict_prompts", after=1)
    client.force_login(study.owner)
    response = client.post(
        f"/studies/{study.pk}/analysis/baselines", {"strategy": ["random", "kmedoids"], "seed": "3"}
    )
    assert response.status_code == 302  # answered while the job waits at its second image
    job = Job.objects.get(study=study, kind="baseline")
    assert reached.wait(WAIT_S)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    url = f"/studies/{study.pk}/jobs/{job.pk}"
    assert f'data-job-url="{url}" data-status="running"' in page
    assert "core/job_watch.js" in page
    state = client.get(url).json()
    assert state["status"] == "running" and 1 <= state["done"] < state["total"]
    assert 0 < state["progress"] < 1
    release.set()
    assert background.wait_idle(WAIT_S)
    state = client.get(url).json()
    assert state["status"] == "done" and state["done"] == state["total"] and not state["error"]
    assert BaselineResult.objects.filter(study=study).count() == state["total"]


def test_an_export_started_through_the_api_runs_in_the_background(
    client, study, background_jobs, monkeypatch
):
    import studies.core.exports as exports

    reached, release = gate(monkeypatch, exports, "run_export", after=0)
    client.force_login(study.owner)
    started = client.post(
        f"/api/v1/studies/{study.pk}/exports", {"format": "tidy"}, content_type="application/json"
    )
    assert started.status_code == 202 and started.json()["status"] in ("queued", "running")
    assert reached.wait(WAIT_S)
    assert client.get(f"/api/v1/exports/{started.json()['id']}").json()["status"] == "running"
    release.set()
    assert background.wait_idle(WAIT_S)
    state = client.get(f"/api/v1/exports/{started.json()['id']}").json()
    assert state["status"] == "done" and state["download_url"]


def test_a_job_that_fails_in_the_background_says_why(client, study, background_jobs, monkeypatch):
    import studies.core.exports as exports

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(exports, "run_export", broken)
    client.force_login(study.owner)
    started = client.post(
        f"/api/v1/studies/{study.pk}/exports", {"format": "tidy"}, content_type="application/json"
    )
    assert started.status_code == 202
    assert background.wait_idle(WAIT_S)
    job = Job.objects.get(pk=started.json()["id"])
    assert job.status == "failed" and job.error == "OSError: disk full" and job.finished_at
    # the thread goes on with the next job
    monkeypatch.undo()
    again = client.post(
        f"/api/v1/studies/{study.pk}/exports", {"format": "tidy"}, content_type="application/json"
    )
    assert background.wait_idle(WAIT_S)
    assert Job.objects.get(pk=again.json()["id"]).status == "done"


def test_a_job_left_running_by_a_stopped_server_is_failed_at_the_next_start(client, study):
    left = Job.objects.create(study=study, kind="precompute", status="running", progress=0.4)
    queued = Job.objects.create(study=study, kind="export", params={"format": "tidy"})
    done = Job.objects.create(study=study, kind="export", status="done", progress=1.0)
    evaluation = TrustEvaluation.objects.create(
        model=study.model, dataset=study.dataset, status="running", created_by=study.owner
    )
    background.enable()  # the next server process starts
    try:
        later = Job.objects.create(study=study, kind="baseline", status="running")
        client.force_login(study.owner)
        assert client.get(f"/studies/{study.pk}/").status_code == 200  # its first request
        for row in (left, queued, evaluation):
            row.refresh_from_db()
            assert row.status == "failed" and row.error == background.INTERRUPTED
            assert row.finished_at is not None
        done.refresh_from_db()
        later.refresh_from_db()
        assert done.status == "done" and later.status == "running"  # not from before the start
        page = client.get(f"/studies/{study.pk}/").content.decode()
        assert "interrupted: the server stopped" in page
    finally:
        later.delete()
        background.disable()


def test_with_a_broker_the_web_never_fails_a_workers_running_job(client, study, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a broker is configured: real workers run jobs
    running = Job.objects.create(study=study, kind="baseline", status="running")
    background.enable()
    try:
        assert not background.enabled()
        client.force_login(study.owner)
        client.get(f"/studies/{study.pk}/")
        assert background.fail_interrupted(before=timezone.now()) == 0
        running.refresh_from_db()
        assert running.status == "running"
    finally:
        background.disable()


def test_at_exit_the_jobs_this_process_holds_are_failed(study):
    job = Job.objects.create(study=study, kind="export", params={"format": "tidy"})
    other = Job.objects.create(study=study, kind="export", params={"format": "tidy"})
    background._in_flight.add(("job", job.pk))
    try:
        background._fail_own_jobs()
    finally:
        background._in_flight.discard(("job", job.pk))
    job.refresh_from_db()
    other.refresh_from_db()
    assert job.status == "failed" and job.error == background.INTERRUPTED
    assert other.status == "queued"


def test_without_a_server_jobs_still_run_in_line(client, study, django_capture_on_commit_callbacks):
    """Commands (seed_demo, the importers) and the test client: no background thread."""
    assert not background.enabled()
    client.force_login(study.owner)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"/api/v1/studies/{study.pk}/exports",
            {"format": "tidy"},
            content_type="application/json",
        )
    assert Job.objects.get(pk=started.json()["id"]).status == "done"


def test_the_server_entry_points_turn_the_background_thread_on():
    """runserver and gunicorn load config.wsgi (uvicorn config.asgi): there, and only there
    (not in a command), batch jobs leave the request."""
    code = (
        "import django, sys; django.setup(); from studies.core import background as b; "
        "e0 = b.enabled(); import config.wsgi; e1 = b.enabled(); b.disable(); "
        "import config.asgi, importlib; importlib.reload(config.asgi); print(e0, e1, b.enabled())"
    )
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT_S,
        cwd=django_settings.BASE_DIR,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]


def test_sqlite_takes_concurrent_writers_without_database_is_locked(tmp_path):
    """A job's progress writes on its thread and a request's writes at the same time: the
    project's SQLite options (WAL, IMMEDIATE transactions, a busy timeout) make them take
    turns instead of failing."""
    from django.db.backends.sqlite3.base import DatabaseWrapper

    options = dict(django_settings.DATABASES["default"].get("OPTIONS", {}))
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default's SQLite options only")
    assert "journal_mode=WAL" in options["init_command"]
    name = str(tmp_path / "demo.sqlite3")
    config = {**django_settings.DATABASES["default"], "NAME": name, "OPTIONS": options}
    setup = DatabaseWrapper(config, alias="concurrency")
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE job (id INTEGER PRIMARY KEY, done INTEGER)")
        cursor.execute("INSERT INTO job VALUES (1, 0), (2, 0)")
    setup.close()
    assert sqlite3.connect(name).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    errors = []

    def writer(row: int) -> None:
        alias = f"writer{row}"
        connections[alias] = db = DatabaseWrapper(config, alias=alias)  # this thread's own
        try:
            for _ in range(150):
                # read, then write: the pattern that fails at once under SQLite's deferred
                # transactions, busy timeout or not
                with transaction.atomic(using=alias), db.cursor() as cursor:
                    cursor.execute("SELECT done FROM job WHERE id = %s", [row])
                    (done,) = cursor.fetchone()
                    cursor.execute("UPDATE job SET done = %s WHERE id = %s", [done + 1, row])
        except Exception as exc:  # "database is locked" lands here
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer, args=(row,)) for row in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert errors == []
    rows = sqlite3.connect(name).execute("SELECT done FROM job ORDER BY id").fetchall()
    assert rows == [(150,), (150,)]


def test_a_jobs_state_is_only_for_the_studys_researchers(client, study):
    from tests.factories import researcher

    job = Job.objects.create(study=study, kind="baseline", status="running", total=4, done=1)
    url = f"/studies/{study.pk}/jobs/{job.pk}"
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(researcher("mallory"))
    assert client.get(url).status_code == 404
    client.force_login(study.owner)
    state = client.get(url).json()
    assert state == {
        "id": job.pk,
        "kind": "baseline",
        "status": "running",
        "label": "Running",
        "progress": 0.0,
        "done": 1,
        "total": 4,
        "error": "",
    }
    other = prompting_study(n_images=1, participants=0)
    assert client.get(f"/studies/{other.pk}/jobs/{job.pk}").status_code == 404
