"""Celery tasks. Light at import (views import this module to enqueue): torch and the science
library are imported inside the tasks, in the worker process.

Queues (config.settings.CELERY_TASK_ROUTES): `predict_mask` and `predict_intervention` run on
`interactive`, everything else on `batch`.
"""

from __future__ import annotations

import base64
import os
import time

from celery import shared_task

from workers.batching import batcher_for
from workers.jobs import running_job
from workers.model_cache import (
    backend_for,
    embedding_cache,
    ground_truth,
    image_files,
    load_rgb,
    spec,
)


def image_embedding(spec, image_id: int):
    """The image's embedding for the spec's backend: memory, then disk cache, then computed."""

    backend = backend_for(spec)
    path, _, sha = image_files(image_id)
    return backend, embedding_cache().get_or_compute(sha, backend, lambda: load_rgb(path))


def _fault_injection_delay() -> None:
    """Test hook: the fault tests (tests/test_integration_faults.py) start a worker with
    INTERVENE_PREDICT_DELAY_S=<seconds> so that it can be killed while it computes a timestep.
    Unset (always, outside those tests) it costs one dict lookup."""
    delay = os.environ.get("INTERVENE_PREDICT_DELAY_S")
    if delay:
        time.sleep(float(delay))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def predict_mask(
    self,
    spec_id: int,
    image_id: int,
    green: list,
    red: list,
    mask_choice: str = "first",
    previous_logits_b64: str | None = None,
    return_logits: bool = False,
) -> dict:
    """One timestep: SAM (or the classical backend) on the current points, IoU vs ground truth.

    Pure with respect to the database (it writes nothing), so a redelivered or repeated run is
    harmless; the web stores the answer once.
    """
    import numpy as np

    from interventions.metrics import iou, rle_encode

    started = time.perf_counter()
    _fault_injection_delay()
    model_spec = spec(spec_id)
    backend, embedding = image_embedding(model_spec, image_id)
    points = np.asarray([*green, *red], dtype=np.float64).reshape(-1, 2)
    labels = np.asarray([1] * len(green) + [0] * len(red), dtype=np.int64)
    mask_input = None
    if previous_logits_b64:
        raw = base64.b64decode(previous_logits_b64)
        mask_input = np.frombuffer(raw, dtype=np.float16).astype(np.float32).reshape(1, 256, 256)
    batcher = batcher_for(backend)  # a threads-pool worker batches concurrent SAM clicks
    if batcher is not None:
        from interventions.segmentation.batching import DecodeRequest

        prediction = batcher.predict(DecodeRequest(embedding, points, labels, mask_input))
    else:
        prediction = backend.predict(
            embedding, points, labels, mask_input=mask_input, multimask=True
        )
    if mask_choice == "best_predicted":
        index = int(np.argmax(prediction.predicted_iou))
    else:
        index = 0
    mask = np.asarray(prediction.masks[index], dtype=bool)
    _, mask_path, _ = image_files(image_id)
    score = iou(mask, ground_truth(mask_path))
    answer = {
        "mask_rle": rle_encode(mask),
        "iou": float(score),
        "predicted_iou": float(prediction.predicted_iou[index]),
        "mask_index": index,
        "model_id": backend.model_id,
        "compute_ms": (time.perf_counter() - started) * 1000.0,
        "low_res_logits": None,
    }
    if return_logits:
        logits = np.asarray(prediction.low_res_logits[index], dtype=np.float16)
        answer["low_res_logits"] = base64.b64encode(logits.tobytes()).decode()
    return answer


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def embed_image(self, spec_id: int, image_id: int) -> str:
    """Compute (or find) one image's embedding in the shared disk cache; returns the model id."""
    backend, _ = image_embedding(spec(spec_id), image_id)
    return backend.model_id


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def precompute_embeddings(self, job_id: int) -> dict:
    """Fill the embedding cache for every image of a study's dataset, with progress on the job."""
    with running_job(job_id) as job:
        if job is None:
            return {"images": 0}
        from studies.core.design import for_job

        study = for_job(job.job)  # an arm's job: that arm's model and options
        if study.model.kind not in ("sam", "classical"):
            return {"images": 0}
        image_ids = list(study.dataset.images.order_by("index").values_list("pk", flat=True))
        job.start(len(image_ids))
        browser = _browser_decoder_wanted(study)
        for image_id in image_ids:
            image_embedding(study.model, image_id)
            if browser:  # the float16 copy participants' browsers fetch, made while it is hot
                browser_embedding(study.model.pk, image_id)
            job.advance()
    return {"images": len(image_ids)}


def _browser_decoder_wanted(study) -> bool:
    from studies.prompting.decoder_files import unavailable_reason

    return unavailable_reason(study.model) is None and bool(study.option("browser_decoder"))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def export_decoder(self, job_id: int) -> dict:
    """Export the study's SAM prompt encoder + mask decoder to ONNX for the browser, once per
    weights (cached by architecture + weights sha256 + decoder format; safe to run twice)."""
    from interventions.segmentation.onnx_export import cached_decoder_onnx
    from studies.core import storage
    from studies.prompting.decoder_files import decoder_dir, decoder_name, unavailable_reason

    with running_job(job_id) as job:
        if job is None:
            return {"exported": False}
        from studies.core.design import for_job

        model = for_job(job.job).model
        reason = unavailable_reason(model)
        if reason:
            raise ValueError(reason)
        job.start(1)
        name = decoder_name(model)
        if not storage.exists("embeddings", name):  # another machine may have exported it
            backend = backend_for(model)
            path = cached_decoder_onnx(
                backend.predictor.model, decoder_dir(), model.architecture, model.weights_sha256
            )
            storage.put_file("embeddings", name, path, keep=True)
        job.advance()
    return {"exported": True, "file": name, "bytes": storage.size("embeddings", name)}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def browser_embedding(self, spec_id: int, image_id: int) -> str:
    """Write (once) the float16 copy of an image's embedding that the browser decoder reads,
    from the shared embedding cache (computing the embedding if it is missing); its file name."""
    from interventions.segmentation.browser import embedding_to_f16_bytes
    from studies.core import storage
    from studies.prompting.decoder_files import embedding_name, unavailable_reason

    model_spec = spec(spec_id)
    reason = unavailable_reason(model_spec)
    if reason:
        raise ValueError(reason)
    from studies.models import DatasetImage

    sha = DatasetImage.objects.values_list("sha256", flat=True).get(pk=image_id)
    name = embedding_name(model_spec, sha)
    if not storage.exists("embeddings", name):
        _, embedding = image_embedding(model_spec, image_id)
        storage.put_bytes("embeddings", name, embedding_to_f16_bytes(embedding))
    return name.rsplit("/", 1)[-1]
