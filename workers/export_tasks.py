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
    """Every (strategy, unit) of the job: points, the study's model (the same `predict_mask`
    code path as the annotators' clicks), IoU vs ground truth; upserted by key.

    The released strategies run as the released `main.py` does: per strategy one random stream
    seeded once with the job's seed, the images in index order, the model's multimask
    prediction's masks[0] (whatever the study's mask_choice). Every ground truth is checked
    before anything is stored, so a data set with an empty (or full) mask fails the job with the
    image named and nothing half-written. The platform's families run per unit as before."""
    from interventions.pointprompt.released_names import RELEASED_STRATEGIES
    from interventions.pointprompt.strategies import ReleasedRandom, released_points
    from interventions.prompt_strategies import select_points
    from studies.models import DatasetImage
    from studies.prompting.baselines import baseline_units, released_units, store_result
    from workers.model_cache import ground_truth, image_files, load_rgb
    from workers.tasks import predict_mask

    with running_job(job_id) as job:
        if job is None:
            return {"results": 0}
        study = job.job.study
        params = job.job.params
        strategies, seed = params["strategies"], int(params.get("seed", 0))
        fixed = tuple(params["fixed"]) if params.get("fixed") else None
        released = [s for s in strategies if s in RELEASED_STRATEGIES]
        families = [s for s in strategies if s not in RELEASED_STRATEGIES]
        family_units = baseline_units(study, fixed) if families else []
        units = released_units(study, fixed, bool(params.get("one_point"))) if released else []
        if released:
            index_of = dict(
                DatasetImage.objects.filter(dataset=study.dataset).values_list("pk", "index")
            )
            for unit in units:
                mask = ground_truth(image_files(unit.image_id)[1])
                if not mask.any() or mask.all():
                    raise ValueError(
                        f"image {index_of[unit.image_id]} of data set {study.dataset.name!r} has "
                        f"{'an empty' if not mask.any() else 'a full'} ground-truth mask: the "
                        "released strategies need pixels inside and outside it"
                    )
        job.start(len(family_units) * len(families) + len(units) * len(released))
        for strategy in families:
            for unit in family_units:
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
        for strategy in released:
            rng = ReleasedRandom(seed)  # once per run, as main.py seeds once
            for unit in units:  # the data set's index order
                image_path, mask_path, _ = image_files(unit.image_id)
                green, red = released_points(
                    strategy,
                    load_rgb(image_path),
                    ground_truth(mask_path),
                    unit.n_green,
                    unit.n_red,
                    rng,
                )
                prediction = predict_mask(
                    study.model.pk, unit.image_id, green.tolist(), red.tolist(), "first"
                )
                store_result(study, unit, strategy, seed, green, red, prediction)
                job.advance()
        done = job.done
    return {"results": done}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_baselines(self, job_id: int) -> dict:
    """Run a `baseline` Job (params: strategies, seed, fixed counts or null, one_point)."""
    return run_baseline_job(job_id)
