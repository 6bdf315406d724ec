"""The lifecycle of a background Job, written once for every batch task.

    with running_job(job_id) as job:
        job.start(total=len(items))
        for item in items:
            ...
            job.advance()          # progress written at most every `every_s` seconds
        job.finish(file=...)       # optional extra fields; done is also set on a clean exit

queued -> running on entry, running -> done on a clean exit, -> failed (with the error text)
on an exception, which propagates so Celery sees it. A job already done is not run again
(`running_job` yields None): tasks are safe to run twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.utils import timezone


class JobProgress:
    def __init__(self, job, every_s: float = 0.5):
        self.job = job
        self.pk = job.pk
        self.total = 0
        self.done = 0
        self.every_s = every_s
        self._last = 0.0
        self._final: dict = {}
        self._outside = None  # an OutsideConnection while an export snapshot is open

    def _update(self, **fields) -> None:
        from studies.models import Job

        if self._outside is not None:
            self._outside.update(Job, self.pk, **fields)
        else:
            Job.objects.filter(pk=self.pk).update(**fields)

    @contextmanager
    def outside_snapshot(self) -> Iterator[None]:
        """Progress written on its own connection for the body's duration, so that it is seen
        at once while the body reads in an export snapshot (studies/core/exports/snapshot.py)."""
        from django.db import connection

        from studies.core.exports.snapshot import OutsideConnection, snapshot_supported

        if not snapshot_supported() or connection.in_atomic_block:
            yield
            return
        self._outside = OutsideConnection()
        try:
            yield
        finally:
            self._outside.close()
            self._outside = None

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self._update(total=total, done=0, progress=0.0)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.set(self.done)

    def set(self, done: int, total: int | None = None) -> None:
        """Progress as (done, total): written at once at the end, else throttled."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every_s:
            fraction = self.done / self.total if self.total else 1.0
            self._update(done=self.done, total=self.total, progress=min(0.99, fraction))
            self._last = now

    def finish(self, **fields) -> None:
        """Extra fields written with status done (e.g. the export's file)."""
        self._final.update(fields)


@contextmanager
def running_job(job_id: int, select: tuple = ("study__model", "study__dataset")) -> Iterator:
    from studies.models import Job

    job = Job.objects.select_related(*select).get(pk=job_id)
    if job.status == "done":
        yield None
        return
    Job.objects.filter(pk=job_id).update(status="running", progress=0.0, error="")
    progress = JobProgress(job)
    try:
        yield progress
    except Exception as exc:
        Job.objects.filter(pk=job_id).update(
            status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    Job.objects.filter(pk=job_id).update(
        status="done",
        progress=1.0,
        done=progress.total or progress.done,
        finished_at=timezone.now(),
        **progress._final,
    )
