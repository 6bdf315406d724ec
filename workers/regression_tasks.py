"""The "What predicts a good prompt" regressions of a prompting study as a batch Job
(studies/prompting/regression.py builds the feature table; interventions/pointprompt/regression.py
fits the models). Light at import: the science is imported inside."""

from __future__ import annotations

from celery import shared_task

from workers.jobs import running_job


def run_regression_job(job_id: int) -> dict:
    from interventions.pointprompt.regression import run_regressions
    from studies.prompting.regression import study_stats_table

    with running_job(job_id) as job:
        if job is None:
            return {"job": job_id}
        study = job.job.study
        params = job.job.params
        n_images = study.dataset.images.count()

        def features_progress(done: int, total: int) -> None:
            job.set(done, n_images + 1)

        table = study_stats_table(study, features_progress)

        def fit_progress(done: int, total: int) -> None:
            job.set(n_images + done, n_images + total)

        report = run_regressions(
            table, k=int(params.get("folds", 3)), seed=int(params.get("seed", 0)),
            n_repeats=int(params.get("repeats", 5)), trees=int(params.get("trees", 100)),
            progress=fit_progress,
        )  # fmt: skip
        job.finish(report=report)
    return {"job": job_id, "rows": report["n_rows"]}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_regression(self, job_id: int) -> dict:
    """Run a `regression` Job (params: key, folds, seed, trees, repeats)."""
    return run_regression_job(job_id)
