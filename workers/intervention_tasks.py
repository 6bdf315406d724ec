"""Celery tasks of intervention studies (docs/design.md "Intervention protocol").

- `predict_intervention` (queue `interactive`, routed by its `predict_` name): one trial, i.e. the
  classifier on the image with a region deleted or inserted; pure with respect to the database,
  so a redelivered run is harmless and the web stores the answer once.
- `predict_image_classes` (`interactive`): the top-5 of the unmodified image.
- `precompute_image_analyses(job_id)` (`batch`): per image of the study's data set, every
  analysis of the registry `interventions.analyses` (Grad-CAM, CounterfactualCAM, ContrastCAM,
  VOICE + trust scores, causal curves), stored as `ImageAnalysis` rows with `.npz` maps; progress
  on the Job; safe to run twice (rows are replaced, not duplicated). The science is composed in
  `interventions.analyses.analyse_image`; this module only loads rows and writes them.

Light at import (the web imports this module to enqueue): torch is imported inside the tasks.
"""

from __future__ import annotations

import io
import time

import numpy as np
from celery import shared_task
from django.core.files.base import ContentFile
from django.db import transaction

from interventions.analyses import (
    ANALYSIS_METHODS,
    analyse_image,
    code_version,
    target_of,
    top_classes,
)
from workers import model_cache
from workers.jobs import running_job
from workers.model_cache import classifier_for, image_pixels
from workers.model_cache import spec as model_spec

_image = image_pixels  # the name tests/intervention/test_intervention_precompute.py imports

# ------------------------------------------------------------------ models and images


def _normalised(classifier, rgb: np.ndarray):
    from interventions.substrates import normalise_image

    return normalise_image(rgb, classifier.mean, classifier.std)


# ------------------------------------------------------------------ explanation maps


def analysis_maps(spec_id: int, image_id: int) -> dict[str, np.ndarray]:
    """Grad-CAM and VOICE uncertainty of an image at the classifier's input size: from the
    stored ImageAnalysis rows when the precompute ran, else computed here (and kept per process)."""
    from studies.models import ImageAnalysis

    rows = {
        a.method: a
        for a in ImageAnalysis.objects.filter(
            image_id=image_id, model_id=spec_id, method__in=("gradcam", "voice")
        )
    }
    if "gradcam" in rows and "voice" in rows and rows["gradcam"].maps and rows["voice"].maps:
        with rows["gradcam"].maps.open("rb") as f:
            gradcam = np.load(io.BytesIO(f.read()))["map"]
        with rows["voice"].maps.open("rb") as f:
            uncertainty = np.load(io.BytesIO(f.read()))["uncertainty"]
        return {"gradcam": gradcam, "uncertainty": uncertainty}
    spec = model_spec(spec_id)
    rgb, _, sha = image_pixels(image_id)
    return _computed_maps(spec, rgb, (spec.pk, spec.weights_sha256, sha))


def _computed_maps(spec, rgb: np.ndarray, key: tuple) -> dict[str, np.ndarray]:
    """Grad-CAM + VOICE computed in this process, kept in the worker's LRU (model_cache)."""
    return model_cache.computed_maps(key, lambda: _explain_now(spec, rgb))


def _explain_now(spec, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The overlay maps from the analyses registry (no trust scores: only the maps are used)."""
    found = analyse_image(
        classifier_for(spec), rgb, methods=("gradcam", "voice"), options={"trust_scores": ()}
    )
    return {
        "gradcam": found["gradcam"]["maps"]["map"],
        "uncertainty": found["voice"]["maps"]["uncertainty"],
    }


# ------------------------------------------------------------------ interactive tasks


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def predict_intervention(
    self, spec_id: int, image_id: int, operation: str, substrate: str, region_rle: dict
) -> dict:
    """One trial: probabilities before and after deleting / inserting the region, the target
    class's change, flip (argmax changed), area fraction, IoU with Grad-CAM's same-area top
    region and the share of the region in VOICE's high-uncertainty region."""
    import torch

    from interventions.metrics import rle_decode
    from interventions.regions import area_fraction, resize_map, top_region_iou, uncertainty_overlap
    from interventions.substrates import NOISE_SEED, intervene, to_input_size

    started = time.perf_counter()
    spec = model_spec(spec_id)
    classifier = classifier_for(spec)
    rgb, label, _ = image_pixels(image_id)
    region = rle_decode(region_rle)
    if region.shape != rgb.shape[:2]:
        raise ValueError(f"region size {region.shape} differs from the image size {rgb.shape[:2]}")
    x = _normalised(classifier, rgb)
    batch = torch.cat(
        [
            to_input_size(x, classifier.input_size),
            to_input_size(intervene(x, region, operation, substrate), classifier.input_size),
        ]
    )
    probs = classifier.predict_proba(batch).double().cpu()
    before, after = probs[0], probs[1]
    pred_before, pred_after = int(before.argmax()), int(after.argmax())
    target = target_of(label, before.shape[0], pred_before)
    maps = analysis_maps(spec_id, image_id)
    shape = region.shape
    return {
        "target_class": target,
        "target_name": classifier.class_names[target],
        "prob_before": float(before[target]),
        "prob_after": float(after[target]),
        "prob_change": float(after[target] - before[target]),
        "prediction_before": pred_before,
        "prediction_after": pred_after,
        "top5_before": top_classes(before, classifier.class_names),
        "top5_after": top_classes(after, classifier.class_names),
        "flipped": pred_after != pred_before,
        "predicts_target": pred_after == target,
        "area_fraction": area_fraction(region),
        "gradcam_iou": top_region_iou(region, resize_map(maps["gradcam"], shape)),
        "voice_overlap": uncertainty_overlap(region, resize_map(maps["uncertainty"], shape)),
        "substrate_seed": NOISE_SEED,
        "model_id": spec.model_id,
        "compute_ms": (time.perf_counter() - started) * 1000.0,
    }


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def predict_image_classes(self, spec_id: int, image_id: int) -> dict:
    """The classifier on the unmodified image: top-5, prediction and the target class."""
    from interventions.substrates import to_input_size

    classifier = classifier_for(model_spec(spec_id))
    rgb, label, _ = image_pixels(image_id)
    probs = (
        classifier.predict_proba(
            to_input_size(_normalised(classifier, rgb), classifier.input_size)
        )[0]
        .double()
        .cpu()
    )
    prediction = int(probs.argmax())
    target = target_of(label, probs.shape[0], prediction)
    return {
        "top5": top_classes(probs, classifier.class_names),
        "prediction": prediction,
        "target_class": target,
        "target_name": classifier.class_names[target],
        "prob_target": float(probs[target]),
        "class_names": list(classifier.class_names),
    }


# ------------------------------------------------------------------ batch precompute


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def store_analyses(image, spec, analyses: dict[str, dict]) -> None:
    """Replace the image's ImageAnalysis rows (and their .npz files) in one transaction."""
    from studies.models import ImageAnalysis

    version = code_version()
    with transaction.atomic():
        for method, result in analyses.items():
            row, _ = ImageAnalysis.objects.select_for_update().get_or_create(
                image=image, model=spec, method=method
            )
            old = row.maps.name if row.maps else None
            row.stats, row.params, row.code_version = result["stats"], result["params"], version
            row.maps.save(
                f"{spec.pk}_{image.sha256[:16]}_{method}.npz",
                ContentFile(_npz(**result["maps"])),
                save=False,
            )
            row.save()
            if old and old != row.maps.name:
                row.maps.storage.delete(old)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def precompute_image_analyses(self, job_id: int) -> dict:
    """Every ImageAnalysis of the study's images, with progress on the Job."""
    with running_job(job_id) as job:
        if job is None:
            return {"images": 0}
        from studies.core.design import for_job

        study = for_job(job.job)  # an arm's job: that arm's model and options
        spec = study.model
        images = list(study.dataset.images.order_by("index"))
        job.start(len(images))
        classifier = classifier_for(spec)
        substrate = study.option("substrate")
        for image in images:
            rgb, label, _ = image_pixels(image.pk)
            store_analyses(image, spec, analyse_image(classifier, rgb, substrate, label))
            job.advance()
    return {"images": len(images), "methods": list(ANALYSIS_METHODS)}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def predict_image_maps(self, spec_id: int, image_id: int) -> dict:
    """Grad-CAM and VOICE uncertainty maps of an image (stored or computed) as nested lists,
    for the participant's overlay when the precompute has not reached the image yet."""
    maps = analysis_maps(spec_id, image_id)
    return {name: np.asarray(m, dtype=np.float32).round(4).tolist() for name, m in maps.items()}
