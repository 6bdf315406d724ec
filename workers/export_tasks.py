"""Batch tasks of issue 4: exports (progress on ExportJob) and automated prompting baselines
(progress on a BackgroundJob). Light at import: the science is imported inside the tasks."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def export_study(self, job_id: int) -> dict:
    """Write one ExportJob's zip; safe to run twice (a finished job is left as it is)."""
    from studies.exports import run_export_job

    return run_export_job(job_id)


def run_baseline_job(job_id: int) -> dict:
    """Every (strategy, unit) of the job: seeded points, the study's model (the same
    `predict_mask` code path as the annotators' clicks), IoU vs ground truth; upserted by key."""
    from interventions.prompt_strategies import select_points
    from studies.baselines import baseline_units, store_result
    from studies.models import BackgroundJob
    from workers.model_cache import ground_truth, load_rgb
    from workers.tasks import _image_files, predict_mask, update_job

    job = BackgroundJob.objects.select_related("study__model", "study__dataset").get(pk=job_id)
    study = job.study
    params = job.params
    strategies, seed = params["strategies"], int(params.get("seed", 0))
    fixed = tuple(params["fixed"]) if params.get("fixed") else None
    units = baseline_units(study, fixed)
    total = len(units) * len(strategies)
    update_job(job_id, status="running", total=total, done=0, progress=0.0, error="")
    done = 0
    try:
        for strategy in strategies:
            for unit in units:
                image_path, mask_path, _ = _image_files(unit.image_id)
                green, red = select_points(
                    strategy,
                    load_rgb(image_path),
                    ground_truth(mask_path),
                    unit.n_green,
                    unit.n_red,
                    seed,
                )
                prediction = predict_mask(
                    study.model_id,
                    unit.image_id,
                    green.tolist(),
                    red.tolist(),
                    study.option("mask_choice"),
                )
                store_result(study, unit, strategy, seed, green, red, prediction)
                done += 1
                update_job(job_id, done=done, progress=done / max(total, 1))
    except Exception as exc:
        update_job(
            job_id,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise
    update_job(job_id, status="done", progress=1.0, finished_at=timezone.now())
    return {"results": done}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_baselines(self, job_id: int) -> dict:
    """Run a `baseline` BackgroundJob (params: strategies, seed, fixed counts or null)."""
    return run_baseline_job(job_id)
