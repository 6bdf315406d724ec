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
        with job.outside_snapshot():  # progress seen while the export reads one snapshot
            head = run_export(job.job.study, fmt, staged, job.set, params)
        storage.put_file("media", relative, staged)
        job.finish(file=relative)
    return {"job": job_id, "file": relative, "counts": head["counts"]}


def run_baseline_job(job_id: int, batched: bool = True) -> dict:
    """Every (strategy, unit) of the job: points, the study's model (the same masks, IoU and
    stored fields as `predict_mask`, the annotators' click path), IoU vs ground truth; upserted
    by key.

    The released strategies run as the released `main.py` does: per strategy one random stream
    seeded once with the job's seed, the images in index order, the model's multimask
    prediction's masks[0] (whatever the study's mask_choice). Every ground truth is checked
    before anything is stored, so a data set with an empty (or full) mask fails the job with the
    image named and nothing half-written. The platform's families run per unit as before.

    `batched` (the default) goes image by image: the image's pixels, mask and embedding are
    read once, every strategy's prompts for it are selected (each released strategy drawing
    from its own stream, so the points are those of the per-strategy order), decoded together
    (`predict_prompts`: one batched SAM forward) and stored in one transaction; progress
    advances per image. `batched=False` is the per-prompt path of before (one `predict_mask`
    and one upsert per prompt), kept as the benchmark's baseline (bench/baselines_scale.py)."""
    from interventions.pointprompt.released_names import RELEASED_STRATEGIES
    from studies.models import DatasetImage
    from studies.prompting.baselines import baseline_units, released_units
    from workers.model_cache import ground_truth, image_files

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
        run = _baselines_per_image if batched else _baselines_per_prompt
        run(job, study, seed, released, units, families, family_units)
        done = job.done
    return {"results": done}


def _baselines_per_prompt(job, study, seed, released, units, families, family_units) -> None:
    """The per-prompt path: strategy by strategy, unit by unit, one `predict_mask` each."""
    from interventions.pointprompt.strategies import ReleasedRandom, released_points
    from interventions.prompt_strategies import select_points
    from studies.prompting.baselines import store_result
    from workers.model_cache import ground_truth, image_files, load_rgb
    from workers.tasks import predict_mask

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


def _baselines_per_image(job, study, seed, released, units, families, family_units) -> None:
    """The batched path: per image one read, one embedding, one decode call, one transaction.

    The released strategies' streams are private to each strategy (`ReleasedRandom`), so taking
    them image by image, strategy by strategy, draws each stream in the same order as running
    one strategy over all images; the families are seeded per prompt."""
    import numpy as np
    from django.db import transaction

    from interventions.metrics import iou, rle_encode
    from interventions.pointprompt.strategies import ReleasedRandom, released_points
    from interventions.prompt_strategies import select_points
    from interventions.segmentation.batching import predict_prompts
    from studies.models import DatasetImage
    from studies.prompting.baselines import store_results
    from workers.model_cache import ground_truth, image_files, load_rgb, spec
    from workers.tasks import image_embedding

    rngs = {strategy: ReleasedRandom(seed) for strategy in released}  # once per strategy
    by_image: dict[int, list] = {}
    for unit in units:  # index order; one unit per image
        by_image.setdefault(unit.image_id, []).extend(
            (strategy, unit, "first") for strategy in released
        )
    mask_choice = study.option("mask_choice") if families else "first"
    for strategy in families:
        for unit in family_units:
            by_image.setdefault(unit.image_id, []).append((strategy, unit, mask_choice))
    order = dict(DatasetImage.objects.filter(dataset=study.dataset).values_list("pk", "index"))
    model_spec = spec(study.model.pk)
    for image_id in sorted(by_image, key=order.__getitem__):
        image_path, mask_path, _ = image_files(image_id)
        rgb, gt = load_rgb(image_path), ground_truth(mask_path)
        picked = []
        for strategy, unit, choice in by_image[image_id]:
            if strategy in rngs:
                green, red = released_points(
                    strategy, rgb, gt, unit.n_green, unit.n_red, rngs[strategy]
                )
            else:
                green, red = select_points(strategy, rgb, gt, unit.n_green, unit.n_red, seed)
            picked.append((strategy, unit, choice, green, red))
        backend, embedding = image_embedding(model_spec, image_id)  # once per image
        prompts = []
        for *_, green, red in picked:  # as predict_mask builds them from the JSON lists
            green_l, red_l = green.tolist(), red.tolist()
            prompts.append(
                (
                    np.asarray([*green_l, *red_l], dtype=np.float64).reshape(-1, 2),
                    np.asarray([1] * len(green_l) + [0] * len(red_l), dtype=np.int64),
                )
            )
        first_only = all(choice == "first" for *_, choice, _, _ in picked)  # masks[0] only
        predictions = predict_prompts(
            backend, embedding, prompts, multimask=True, first_only=first_only
        )
        rows = []
        for (strategy, unit, choice, green, red), prediction in zip(
            picked, predictions, strict=True
        ):
            index = int(np.argmax(prediction.predicted_iou)) if choice == "best_predicted" else 0
            mask = np.asarray(prediction.masks[index], dtype=bool)
            answer = {
                "mask_rle": rle_encode(mask),
                "iou": float(iou(mask, gt)),
                "predicted_iou": float(prediction.predicted_iou[index]),
                "mask_index": index,
                "model_id": backend.model_id,
            }
            rows.append((unit, strategy, seed, green, red, answer))
        with transaction.atomic():
            store_results(study, rows)
        job.advance(len(rows))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_prompt_baselines(self, job_id: int) -> dict:
    """Run a `baseline` Job (params: strategies, seed, fixed counts or null, one_point)."""
    return run_baseline_job(job_id)
