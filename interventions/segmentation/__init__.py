"""Segmentation backends with SAM's embed/predict split: ``get_backend(BackendSpec(...))``.

The SAM backend (and torch) is imported only when a SAM spec is asked for.
"""

from __future__ import annotations

from interventions.segmentation.backend import (
    BackendSpec,
    Embedding,
    Prediction,
    SegmentationBackend,
)

__all__ = ["BackendSpec", "Embedding", "Prediction", "SegmentationBackend", "get_backend"]


def get_backend(spec: BackendSpec) -> SegmentationBackend:
    """Build the backend a spec names: ``classical`` (no weights) or ``sam`` (vit_h / vit_l /
    vit_b from ``spec.weights_path``; nothing is downloaded)."""
    if spec.kind == "classical":
        if spec.weights_path:
            raise ValueError("the classical backend takes no weights_path")
        from interventions.segmentation.classical import ClassicalBackend

        return ClassicalBackend()
    if spec.kind == "sam":
        if not spec.weights_path:
            raise ValueError(
                "a SAM backend needs weights_path (a local checkpoint such as "
                "sam_vit_b_01ec64.pth); nothing is downloaded at run time"
            )
        from interventions.segmentation.sam import SamBackend

        return SamBackend.from_checkpoint(spec.architecture, spec.weights_path, spec.device)
    raise ValueError(f"unknown backend kind {spec.kind!r}; choose 'sam' or 'classical'")
