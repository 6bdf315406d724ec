"""Batch tasks of issue 4: exports (progress on ExportJob) and automated prompting baselines
(progress on a BackgroundJob). Light at import: the science is imported inside the tasks."""
from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def export_study(self, job_id: int) -> dict:
    """Write one ExportJob's zip; safe to run twice (a finished job is left as it is)."""
    from studies.exports import run_export_job

    return run_export_job(job_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_baselines(self, job_id: int) -> dict:
    """Run a baseline BackgroundJob (params: strategy, seed, counts); results upserted by key."""
    from workers.baselines_runner import run_baseline_job

    return run_baseline_job(job_id)
