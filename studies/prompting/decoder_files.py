"""Where the browser decoder's files live, for the web process (which serves them) and the
workers (which write them): the exported ONNX decoder of a SAM model spec and the float16 copy
of an image's embedding, both stored names in the `embeddings` area (studies/core/storage.py:
`EMBEDDING_CACHE_DIR`, or object storage); and the `decoder` block a page reads to decide
whether it previews clicks locally."""

from __future__ import annotations

from pathlib import Path

from django.urls import reverse

from interventions.segmentation.browser import (
    DECODER_FORMAT,
    decoder_onnx_path,
    f16_embedding_path,
)
from studies.core import storage


def decoder_dir() -> Path:
    """This machine's folder of exported decoders (the area itself, or its local copy)."""
    return storage.local_root("embeddings") / "decoders"


def unavailable_reason(spec) -> str | None:
    """Why a model spec can have no browser decoder (None when it can)."""
    if spec.kind != "sam":
        return f"the study's model is a {spec.kind} model: only SAM has a browser decoder"
    if not spec.weights_sha256:
        return "the study's SAM model has no weights sha256 to key its exported decoder"
    return None


def decoder_name(spec) -> str:
    """The stored name of a SAM spec's exported decoder
    (`decoders/<architecture>-<weights sha256>-decoder-v3.samdec`: three ONNX graphs in one container)."""
    return decoder_onnx_path("decoders", spec.architecture, spec.weights_sha256).as_posix()


def embedding_name(spec, image_sha256: str) -> str:
    """The stored name of one image's float16 embedding for one SAM spec (`browser.py` format)."""
    return f16_embedding_path(
        "browser", image_sha256, spec.model_id, spec.weights_sha256 or None
    ).as_posix()


def decoder_file(spec) -> Path:
    """The exported decoder's file on this machine (local file system: the stored file)."""
    return storage.local_path("embeddings", decoder_name(spec))


def embedding_file(spec, image_sha256: str) -> Path:
    """The float16 embedding's file on this machine (local file system: the stored file)."""
    return storage.local_path("embeddings", embedding_name(spec, image_sha256))


def decoder_stored(spec) -> bool:
    return storage.exists("embeddings", decoder_name(spec))


def study_unavailable_reason(study) -> str | None:
    """Why this study's browser decoder is not served (None when it may be)."""
    reason = unavailable_reason(study.model)
    if reason is None and not study.option("browser_decoder"):
        reason = "the study turned the browser decoder off (protocol option browser_decoder)"
    return reason


def decoder_block(study, assignment_id: int) -> dict:
    """What a page needs to preview clicks in the browser: whether it can, why not, the two
    file URLs and the options the local decoder must follow to answer as the server does."""
    from studies.core.api_errors import store_unavailable

    reason = study_unavailable_reason(study)
    try:
        if reason is None and not decoder_stored(study.model):
            export_again(study)
            if not decoder_stored(study.model):  # a queued job; eager Celery has run it
                reason = "the decoder is not exported yet (the study's onnx_export job)"
    except Exception as exc:
        if not store_unavailable(exc):
            raise
        reason = "the file store is unreachable right now; the server answers the clicks"
    return {
        "available": reason is None,
        "reason": reason,
        "model_url": reverse("api-assignment-decoder", args=[assignment_id]),
        "embedding_url": reverse("api-assignment-embedding", args=[assignment_id]),
        "model_id": study.model.model_id,
        "decoder_format": DECODER_FORMAT,
        "mask_choice": study.option("mask_choice"),
        "chain_low_res_mask": bool(study.option("chain_low_res_mask")),
        "hover_preview": bool(study.option("hover_preview")),
    }


def export_again(study):
    """Start the decoder export of an open study whose file is missing while no export is
    queued or running: the decoder format changed (the file name carries it), the cache was
    cleared, or the study opened before browser decoders existed. A failed export is not
    retried here: its error stays on the study page until the researcher acts. Returns the new
    Job or None."""
    from django.db import transaction

    from studies.core.dispatch import start_job
    from studies.models import Study

    if study.status != "open":
        return None
    with transaction.atomic():
        Study.objects.select_for_update().filter(pk=study.pk).first()  # one starter at a time
        last = study.jobs.filter(kind="onnx_export").order_by("-pk").first()
        if last is not None and last.status != "done":
            return None
        return start_job(
            study,
            "onnx_export",
            "workers.tasks.export_decoder",
            params={"model": study.model.model_id},
        )
