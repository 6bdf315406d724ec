"""Celery tasks of intervention studies (docs/design.md "Intervention protocol").

- `predict_intervention` (queue `interactive`, routed by its `predict_` name): one trial, i.e. the
  classifier on the image with a region deleted or inserted; pure with respect to the database,
  so a redelivered run is harmless and the web stores the answer once.
- `predict_image_classes` (`interactive`): the top-5 of the unmodified image.
- `precompute_image_analyses(job_id)` (`batch`): per image of the study's data set Grad-CAM,
  CounterfactualCAM, ContrastCAM (second class), VOICE map + stats, and the deletion/insertion
  curves + AUC of Grad-CAM, stored as `ImageAnalysis` rows with `.npz` maps; progress on the
  Job; safe to run twice (rows are replaced, not duplicated).

Light at import (the web imports this module to enqueue): torch is imported inside the tasks.
"""

from __future__ import annotations

import hashlib
import io
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from celery import shared_task
from django.core.files.base import ContentFile
from django.db import transaction

from workers import model_cache
from workers.jobs import running_job
from workers.model_cache import classifier_for
from workers.model_cache import image_pixels as _image
from workers.model_cache import spec as _spec

TOP_K = 5
FLIP_STEPS = 50
ANALYSIS_METHODS = ("gradcam", "counterfactual_cam", "contrast_cam", "voice", "causal_gradcam")

# ------------------------------------------------------------------ models and images


def _normalised(classifier, rgb: np.ndarray):
    from interventions.substrates import normalise_image

    return normalise_image(rgb, classifier.mean, classifier.std)


def top_classes(probs, class_names, k: int = TOP_K) -> list[dict]:
    """[{class, name, prob}] of the k most probable classes, most probable first."""
    values, indices = probs.topk(min(k, probs.shape[-1]))
    return [
        {
            "class": int(i),
            "name": class_names[int(i)] if int(i) < len(class_names) else str(int(i)),
            "prob": float(v),
        }
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def target_of(label: int | None, n_classes: int, prediction: int) -> int:
    """The trial's target class: the image's class label when it is one of the model's classes,
    else the model's prediction on the unmodified image."""
    return int(label) if label is not None and 0 <= int(label) < n_classes else int(prediction)


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
    spec = _spec(spec_id)
    rgb, _, sha = _image(image_id)
    return _computed_maps(spec, rgb, (spec.pk, spec.weights_sha256, sha))


def _computed_maps(spec, rgb: np.ndarray, key: tuple) -> dict[str, np.ndarray]:
    """Grad-CAM + VOICE computed in this process, kept in the worker's LRU (model_cache)."""
    return model_cache.computed_maps(key, lambda: _explain_now(spec, rgb))


def _explain_now(spec, rgb: np.ndarray) -> dict[str, np.ndarray]:
    from interventions.explain import grad_cam
    from interventions.voice import voice

    classifier = classifier_for(spec)
    x = classifier.preprocess(rgb)
    gradcam, _ = grad_cam(classifier.module, x, classifier.target_layer)
    result = voice(classifier.module, x, classifier.target_layer)
    return {
        "gradcam": gradcam[0].detach().cpu().numpy(),
        "uncertainty": result.uncertainty[0].detach().cpu().numpy(),
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
    spec = _spec(spec_id)
    classifier = classifier_for(spec)
    rgb, label, _ = _image(image_id)
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

    classifier = classifier_for(_spec(spec_id))
    rgb, label, _ = _image(image_id)
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


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (12 hex) of the science modules the analyses come from."""
    import interventions

    root = Path(interventions.__file__).parent
    digest = hashlib.sha256()
    for name in (
        "explain.py",
        "voice.py",
        "causal.py",
        "substrates.py",
        "regions.py",
        "models.py",
        "trust.py",
    ):
        path = root / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def image_analyses(
    classifier, rgb: np.ndarray, substrate: str, label: int | None = None
) -> dict[str, dict]:
    """Every analysis of one image: {method: {"maps": {name: array}, "stats": {...}, "params": {...}}}."""
    import torch

    from interventions.causal import causal_curve
    from interventions.explain import contrast_cam, counterfactual_cam, grad_cam
    from interventions.regions import resize_map
    from interventions.substrates import smallest_flip_by_saliency
    from interventions.trust import trust_scores
    from interventions.voice import voice

    model, layer = classifier.module, classifier.target_layer
    x = classifier.preprocess(rgb)
    gradcam, logits = grad_cam(model, x, layer)
    probs = torch.softmax(logits.double(), dim=1)[0]
    pred = int(probs.argmax())
    second = int(logits[0].topk(2).indices[1])
    counterfactual, _ = counterfactual_cam(model, x, layer, pred)
    contrast, _ = contrast_cam(model, x, layer, second)
    v = voice(model, x, layer, contrast_classes="all")
    step = int(classifier.input_size[1])
    deletion = causal_curve(model, x, gradcam, "deletion", step=step)
    insertion = causal_curve(model, x, gradcam, "insertion", step=step)
    trust = {
        k: float(np.asarray(val)[0])
        for k, val in trust_scores(model, x).items()
        if k != "prediction"
    }
    gradcam_np = gradcam[0].detach().cpu().numpy()

    full = _normalised(classifier, rgb)
    saliency_full = resize_map(gradcam_np, rgb.shape[:2])
    target = target_of(label, probs.shape[0], pred)
    flip_delete = smallest_flip_by_saliency(
        classifier.predict_proba,
        full,
        saliency_full,
        classifier.input_size,
        "delete",
        substrate,
        FLIP_STEPS,
    )
    flip_insert = smallest_flip_by_saliency(
        classifier.predict_proba,
        full,
        saliency_full,
        classifier.input_size,
        "insert",
        substrate,
        FLIP_STEPS,
        target=target,
    )
    common = {
        "prediction": pred,
        "prediction_name": classifier.class_names[pred],
        "prob_pred": float(probs[pred]),
    }
    names = classifier.class_names
    return {
        "gradcam": {
            "maps": {"map": gradcam_np},
            "stats": {
                **common,
                "logit_pred": float(logits[0, pred]),
                "top5": top_classes(probs, names),
            },
            "params": {"class_idx": pred, "layer": layer},
        },
        "counterfactual_cam": {
            "maps": {"map": counterfactual[0].detach().cpu().numpy()},
            "stats": common,
            "params": {"class_idx": pred, "layer": layer},
        },
        "contrast_cam": {
            "maps": {"map": contrast[0].detach().cpu().numpy()},
            "stats": {**common, "contrast_class": second, "contrast_name": names[second]},
            "params": {"prediction": pred, "contrast_idx": second, "layer": layer},
        },
        "voice": {
            "maps": {
                "uncertainty": v.uncertainty[0].detach().cpu().numpy(),
                "explanation": v.explanation[0].detach().cpu().numpy(),
                "contrast": v.contrast[0].detach().cpu().numpy(),
            },
            "stats": {
                **{
                    k: (float(val) if isinstance(val, float) else val)
                    for k, val in v.stats[0].items()
                },
                **{f"trust_{k}": val for k, val in trust.items()},
            },
            "params": {
                "method": "gradcam",
                "contrast_classes": "all",
                "layer": layer,
                "threshold": 0.1,
            },
        },
        "causal_gradcam": {
            "maps": {
                "deletion": deletion.scores[0],
                "insertion": insertion.scores[0],
                "flip_deletion_probs": np.asarray(flip_delete["probs"]),
                "flip_insertion_probs": np.asarray(flip_insert["probs"]),
            },
            "stats": {
                **common,
                "deletion_auc": float(deletion.auc[0]),
                "insertion_auc": float(insertion.auc[0]),
                "n_scores": int(deletion.scores.shape[1]),
                "smallest_flip_deletion": flip_delete["fraction"],
                "smallest_restore_insertion": flip_insert["fraction"],
                "target_class": target,
            },
            "params": {
                "saliency": "gradcam",
                "step": step,
                "deletion_substrate": "zero",
                "insertion_substrate": "blur",
                "flip_substrate": substrate,
                "flip_steps": FLIP_STEPS,
            },
        },
    }


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
        study = job.job.study
        spec = study.model
        images = list(study.dataset.images.order_by("index"))
        job.start(len(images))
        classifier = classifier_for(spec)
        substrate = study.option("substrate")
        for image in images:
            rgb, label, _ = _image(image.pk)
            store_analyses(image, spec, image_analyses(classifier, rgb, substrate, label))
            job.advance()
    return {"images": len(images), "methods": list(ANALYSIS_METHODS)}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def predict_image_maps(self, spec_id: int, image_id: int) -> dict:
    """Grad-CAM and VOICE uncertainty maps of an image (stored or computed) as nested lists,
    for the participant's overlay when the precompute has not reached the image yet."""
    maps = analysis_maps(spec_id, image_id)
    return {name: np.asarray(m, dtype=np.float32).round(4).tolist() for name, m in maps.items()}
