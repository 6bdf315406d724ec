"""Batch tasks of prompting studies' analysis: exports and automated prompting baselines, each
a Job with progress (workers/jobs.py). Light at import: the science is imported inside."""

from __future__ import annotations

from celery import shared_task

from workers.jobs import running_job


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def export_study(self, job_id: int) -> dict:
    """Write one export Job's zip as `exports/...` in the media area (MEDIA_ROOT, or uploaded
    to object storage from a private staging file); safe to run twice."""
    from studies.core import storage
    from studies.core.exports import run_export

    with running_job(job_id) as job:
        if job is None:
            return {"job": job_id}
        fmt = job.job.format
        params = {k: v for k, v in job.job.params.items() if k != "format"}
        relative = f"exports/study{job.job.study_id}_{fmt}_{job_id}.zip"
        staged = storage.staging_path("media", relative)
        head = run_export(job.job.study, fmt, staged, job.set, params)
        storage.put_file("media", relative, staged)
        job.finish(file=relative)
    return {"job": job_id, "file": relative, "counts": head["counts"]}


def run_baseline_job(job_id: int) -> dict:
    """Every (strategy, unit) of the job: seeded points, the study's model (the same
    `predict_mask` code path as the annotators' clicks), IoU vs ground truth; upserted by key."""
    from interventions.prompt_strategies import select_points
    from studies.prompting.baselines import baseline_units, store_result
    from workers.model_cache import ground_truth, image_files, load_rgb
    from workers.tasks import predict_mask

    with running_job(job_id) as job:
        if job is None:
            return {"results": 0}
        study = job.job.study
        params = job.job.params
        strategies, seed = params["strategies"], int(params.get("seed", 0))
        fixed = tuple(params["fixed"]) if params.get("fixed") else None
        units = baseline_units(study, fixed)
        job.start(len(units) * len(strategies))
        for strategy in strategies:
            for unit in units:
                image_path, mask_path, _ = image_files(unit.image_id)
                green, red = select_points(
                    strategy,
                    load_rgb(image_path),
                    ground_truth(mask_path),
                    unit.n_green,
                    unit.n_red,
                    seed,
                )
                prediction = predict_mask(
                    study.model.pk,
                    unit.image_id,
                    green.tolist(),
                    red.tolist(),
                    study.option("mask_choice"),
                )
                store_result(study, unit, strategy, seed, green, red, prediction)
                job.advance()
        done = job.done
    return {"results": done}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_baselines(self, job_id: int) -> dict:
    """Run a `baseline` Job (params: strategies, seed, fixed counts or null)."""
    return run_baseline_job(job_id)
