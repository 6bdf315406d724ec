"""Where the browser decoder's files live, for the web process (which serves them) and the
workers (which write them): the exported ONNX decoder of a SAM model spec and the float16 copy
of an image's embedding, both under `EMBEDDING_CACHE_DIR` (shared by every process)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from interventions.segmentation.browser import decoder_onnx_path, f16_embedding_path


def decoder_dir() -> Path:
    return Path(settings.EMBEDDING_CACHE_DIR) / "decoders"


def unavailable_reason(spec) -> str | None:
    """Why a model spec can have no browser decoder (None when it can)."""
    if spec.kind != "sam":
        return f"the study's model is a {spec.kind} model: only SAM has a browser decoder"
    if not spec.weights_sha256:
        return "the study's SAM model has no weights sha256 to key its exported decoder"
    return None


def decoder_file(spec) -> Path:
    """The exported decoder of a SAM spec (`<architecture>-<weights sha256>-decoder-v2.samdec`: three ONNX graphs in one container)."""
    return decoder_onnx_path(decoder_dir(), spec.architecture, spec.weights_sha256)


def embedding_file(spec, image_sha256: str) -> Path:
    """The float16 embedding of one image for one SAM spec (`browser.py` format)."""
    return f16_embedding_path(
        Path(settings.EMBEDDING_CACHE_DIR) / "browser",
        image_sha256,
        spec.model_id,
        spec.weights_sha256 or None,
    )
