"""The stored prompting analysis as a batch Job (studies/prompting/analysis_store.py): computed
once, then brought up to date incrementally. Light at import."""

from __future__ import annotations

from celery import shared_task

from workers.jobs import running_job


def run_analysis_job(job_id: int) -> dict:
    from studies.prompting.analysis_store import update

    with running_job(job_id) as job:
        if job is None:
            return {"job": job_id}
        result = update(job.job.study, progress=lambda done, total: job.set(done, total))
        job.finish(report={"assignments": result.assignments, "recomputed": result.recomputed,
                           "seconds": result.seconds})  # fmt: skip
    return {"job": job_id, "recomputed": result.recomputed}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def update_analysis(self, job_id: int) -> dict:
    return run_analysis_job(job_id)
