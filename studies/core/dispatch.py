"""The one way the web process hands work to Celery: by task name, without importing the task
module's science (no torch in the web process).

- `run_interactive(name, args)`: a click -> answer task on the `interactive` queue, waited for.
  Every failure of the service (broker down, worker lost, timeout, the task crashing) is the
  same 503 telling the client to retry with the same `client_event_id`; a ValueError raised by
  the model (the input cannot be used) is a 400.
- `start_job(...)`: a `Job` row, and its task sent to the `batch` queue once the row is
  committed; a failure to send marks the row failed (the page shows it) instead of raising.
- `send_batch(...)`: how a batch task is sent: to the broker, or on the embedded default
  (eager) to the server process's background thread (studies/core/background.py), so the
  request that started it returns at once; in-line where no server runs (commands, tests).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studies.core.api_errors import ApiError

log = logging.getLogger(__name__)
_imported = threading.Lock()
_ready = False


def celery_task(name: str):
    """The registered task called `name` (task modules are imported once, lazily)."""
    global _ready
    from config.celery_app import app

    if not _ready:
        with _imported:
            app.loader.import_default_modules()
            _ready = True
    return app.tasks[name]


def run_interactive(name: str, args: list, what: str = "prediction"):
    """Run `name` on the `interactive` queue and wait for its answer (see the module doc)."""
    try:
        task = celery_task(name)
        if settings.CELERY_TASK_ALWAYS_EAGER:
            # In-process Celery (the embedded default): run the task here. Celery's eager
            # `apply` sets a process-wide "joining would block" flag while a task runs, so under
            # a threaded server another request's `get()` would refuse ("Never call
            # result.get() within a task"); an eager result is already there, nothing blocks.
            return task.apply(args=args).get(propagate=True, disable_sync_subtasks=False)
        result = task.apply_async(args=args, queue="interactive")
        return result.get(timeout=settings.INTERACTIVE_TIMEOUT_S, propagate=True)
    except ApiError:
        raise
    except ValueError as exc:  # the model refused this input: the input, not the service
        raise ApiError(400, f"the model cannot use this input: {exc}") from exc
    except Exception as exc:  # broker down, worker lost, timeout, crash: nothing was stored
        raise ApiError(
            503,
            f"the {what} service is unavailable right now ({type(exc).__name__}); "
            "retry with the same client_event_id",
        ) from exc


def start_job(study, kind: str, task: str, params: dict | None = None, created_by=None):
    """Create a queued Job and send `task(job_id)` to the batch queue after the commit.

    `study` is None for jobs that belong to no study (a data set import)."""
    from studies.models import Job

    arm = getattr(study, "_arm", None)  # an arm's view (studies/core/design.py run_on_open)
    params = {**(params or {}), **({"arm": arm} if arm else {})}
    job = Job.objects.create(study=study, kind=kind, params=params, created_by=created_by)

    def failed(exc: Exception) -> None:
        log.warning("%s job %s failed: %s", kind, job.pk, exc)
        Job.objects.filter(pk=job.pk).exclude(status="failed").update(
            status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )

    transaction.on_commit(lambda: send_batch(task, job.pk, ("job", job.pk), failed))
    return job


def send_batch(task: str, pk: int, row: tuple[str, int], failed) -> None:
    """Send `task(pk)` to the batch queue; `failed(exc)` marks the row when sending (or, run
    in-line, the task) fails, instead of raising into the request."""
    from studies.core import background

    try:
        if settings.CELERY_TASK_ALWAYS_EAGER and background.enabled():
            background.submit(lambda: celery_task(task).apply(args=[pk], throw=True), row, failed)
            return
        celery_task(task).apply_async(args=[pk], queue="batch")
    except Exception as exc:  # eager mode propagates; the row shows the error
        failed(exc)
