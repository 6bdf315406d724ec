"""Importing an uploaded data set archive as a Job: every pair checked, the accepted ones stored
in one transaction, the report (accepted, refused with the reason each) kept on the job.
Light at import: the importer is imported inside."""

from __future__ import annotations

from celery import shared_task

from workers.jobs import running_job


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def import_dataset(self, job_id: int) -> dict:
    """Import the archive named in the job's params (a stored name in the media area, copied
    to this machine first when it is in object storage); the archive is removed afterwards."""
    from django.conf import settings

    from studies.core import storage
    from studies.core.importers import import_archive
    from studies.models import Job

    stored = Job.objects.get(pk=job_id).params["archive"]
    archive = storage.local_copy("media", stored)
    try:
        with running_job(job_id, select=()) as job:
            if job is None:
                return {"job": job_id}
            params = job.job.params
            try:
                dataset, report = import_archive(
                    archive,
                    params["name"],
                    max_pixels=settings.IMPORT_MAX_PIXELS,
                    progress=lambda done, total: job.set(done, total),
                )
            except ValueError as exc:
                report = getattr(exc, "report", None)
                if report is not None:
                    Job.objects.filter(pk=job_id).update(report=report.as_dict())
                raise
            job.finish(dataset=dataset, report=report.as_dict())
    finally:
        archive.unlink(missing_ok=True)
        if storage.remote():
            storage.delete("media", stored)
    return {"job": job_id, "dataset": dataset.pk, "accepted": len(report.accepted)}
