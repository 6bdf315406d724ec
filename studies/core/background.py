"""Background jobs on the embedded default (no broker: Celery eager).

With a broker, a batch task goes to the `batch` queue and a worker process runs it. Without
one, Celery's eager mode would run it inside the request that started it, holding the page for
the whole job (minutes for baselines or a trust evaluation). Instead, a web server process on
the embedded default runs batch tasks on one background thread of its own
(`enable()` is called by config/wsgi.py and config/asgi.py, so runserver turns it on; a
management command or the test client does not, and runs them in-line as before):

- `submit(run, row, on_error)` queues a task (dispatch.send_batch: Celery's eager `apply`); the request returns at once and the
  page polls the row's progress, exactly as with a broker. One thread runs the queue in order,
  like one batch worker with concurrency 1 (a job is CPU-bound; two would only slow each other
  and the participants' clicks).
- The interactive click path is untouched: it still runs in the request, in-process.
- A job in flight when the server stops is marked failed, "interrupted: the server stopped
  before it finished": at exit (atexit: Ctrl-C, an autoreload) and, for a process that was
  killed, by the next server process at its first request (`fail_interrupted`), which fails
  only rows queued or running since before it started. That sweep runs only on the embedded
  default, in a server process that runs the jobs itself: with a broker, rows a real worker is
  running are never touched. (The embedded default is one server process; several eager
  server processes on one database would fail each other's jobs at start.)
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the server stopped before it finished; start the job again"
_queue: queue.Queue = queue.Queue()
_lock = threading.Lock()
_thread: threading.Thread | None = None
_enabled = False
_started_at = None  # when this process began running jobs itself (the sweep's cut-off)
_swept = False
_in_flight: set[tuple[str, int]] = set()  # (model label, pk) queued or running here
_idle = threading.Condition()


def enable() -> None:
    """Run batch tasks on this process's background thread (eager mode only; idempotent)."""
    global _enabled, _started_at, _swept
    if not settings.CELERY_TASK_ALWAYS_EAGER or not settings.BACKGROUND_JOBS:
        return
    with _lock:
        if _enabled:
            return
        _enabled, _started_at, _swept = True, timezone.now(), False
    from django.core.signals import request_started

    request_started.connect(_sweep_once, dispatch_uid="intervene-background-sweep")
    atexit.register(_fail_own_jobs)


def disable() -> None:
    """Back to in-line eager jobs (tests): waits for what is queued to finish first."""
    global _enabled
    wait_idle()
    from django.core.signals import request_started

    request_started.disconnect(dispatch_uid="intervene-background-sweep")
    atexit.unregister(_fail_own_jobs)
    _enabled = False


def enabled() -> bool:
    return _enabled


def submit(run: Callable[[], object], row: tuple[str, int], on_error: Callable) -> None:
    """Queue `run()` (one task) on the background thread. `row` is ("job" | "trust", pk): the
    row the task moves, failed with INTERRUPTED if the process stops first. `on_error(exc)`
    records a failure that happened before the task's own lifecycle could (it must not raise)."""
    global _thread
    with _idle:
        _in_flight.add(row)
    _queue.put((run, row, on_error))
    with _lock:
        if _thread is None or not _thread.is_alive():
            # daemon: Ctrl-C stops the server at once instead of waiting for the job
            _thread = threading.Thread(target=_run, name="intervene-batch", daemon=True)
            _thread.start()


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until nothing is queued or running here (tests, shutdown); False on timeout."""
    with _idle:
        return _idle.wait_for(lambda: not _in_flight, timeout=timeout)


def _run() -> None:
    while True:
        run, row, on_error = _queue.get()
        try:
            close_old_connections()
            run()
        except Exception as exc:  # the task's lifecycle marked its row; on_error covers the rest
            log.warning("background task for %s %s failed: %s", *row, exc)
            try:
                on_error(exc)
            except Exception:
                log.exception("could not record the failure of %s %s", *row)
        finally:
            connections.close_all()  # this thread's connection: no lock or file held between jobs
            with _idle:
                _in_flight.discard(row)
                _idle.notify_all()


def _models():
    from studies.models import Job, TrustEvaluation

    return {"job": Job, "trust": TrustEvaluation}


def fail_interrupted(before=None) -> int:
    """Mark failed every job and trust evaluation still queued or running that was created
    before `before` (default: when this process started running jobs) and that this process
    does not hold: on the embedded default nothing else can be running it. Returns how many."""
    if not _enabled:
        return 0
    before = before or _started_at
    with _idle:
        held = set(_in_flight)
    count = 0
    for label, model in _models().items():
        stale = model.objects.filter(status__in=("queued", "running"), created_at__lt=before)
        mine = [pk for kind, pk in held if kind == label]
        count += stale.exclude(pk__in=mine).update(
            status="failed", error=INTERRUPTED, finished_at=timezone.now()
        )
    if count:
        log.warning("marked %d interrupted job(s) failed", count)
    return count


def _sweep_once(**_kwargs) -> None:
    global _swept
    if _swept:
        return
    with _lock:
        if _swept:
            return
        _swept = True
    try:
        fail_interrupted()
    except Exception:  # e.g. not migrated yet: the page itself will say what is wrong
        log.exception("could not mark interrupted jobs failed")


def _fail_own_jobs() -> None:
    """At exit: the rows this process still holds cannot finish any more."""
    with _idle:
        held = set(_in_flight)
    if not held:
        return
    try:
        for label, model in _models().items():
            pks = [pk for kind, pk in held if kind == label]
            if pks:
                model.objects.filter(pk__in=pks, status__in=("queued", "running")).update(
                    status="failed", error=INTERRUPTED, finished_at=timezone.now()
                )
    except Exception:  # the database may be gone too; the next start's sweep covers it
        log.exception("could not mark the interrupted jobs failed at exit")
