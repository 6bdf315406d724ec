"""Segment Anything (Kirillov et al., 2023) through segment-anything's own ``SamPredictor``.

``embed`` runs ``set_image`` (ResizeLongestSide to the encoder's input, normalise, ViT encoder)
and keeps ``features``, ``original_size`` and ``input_size``; ``predict`` puts them back into
the predictor and calls ``SamPredictor.predict``, so the answer is exactly the reference one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from interventions.segmentation.backend import (
    Embedding,
    Prediction,
    check_image,
    check_mask_input,
    check_prompt,
)

ARCHITECTURES = ("vit_h", "vit_l", "vit_b")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; memoised per (path, size, mtime)."""
    st = os.stat(path)
    return _file_sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_device(device: str | None = None) -> torch.device:
    """The given device, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SamBackend:
    """SAM with the embed/predict split; one predictor per backend, guarded by a lock."""

    def __init__(self, sam: torch.nn.Module, model_id: str, weights_sha256: str | None) -> None:
        from segment_anything import SamPredictor

        self.model_id = model_id
        self.weights_sha256 = weights_sha256
        self.predictor = SamPredictor(sam.eval())
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls, architecture: str, weights_path: str | os.PathLike[str], device: str | None = None
    ) -> SamBackend:
        """Build ``sam_model_registry[architecture]`` from a local checkpoint file; model id
        ``sam-<architecture>-<first 12 hex of the checkpoint's sha256>``."""
        from segment_anything import sam_model_registry

        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown SAM architecture {architecture!r}; choose one of {ARCHITECTURES}"
            )
        path = Path(weights_path)
        if not path.is_file():
            raise ValueError(f"SAM checkpoint {str(path)!r} does not exist or is not a file")
        sha = file_sha256(path)
        sam = sam_model_registry[architecture](checkpoint=str(path))
        sam.to(default_device(device))
        return cls(sam, f"sam-{architecture}-{sha[:12]}", sha)

    @classmethod
    def from_model(
        cls,
        sam: torch.nn.Module,
        model_id: str,
        weights_sha256: str | None = None,
        device: str | None = None,
    ) -> SamBackend:
        """Wrap an already-built ``Sam`` module (e.g. a tiny or randomly initialised one)."""
        if not model_id:
            raise ValueError("model_id must be a non-empty string")
        sam.to(default_device(device))
        return cls(sam, model_id, weights_sha256)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def embed(self, image: np.ndarray) -> Embedding:
        """``SamPredictor.set_image`` on an RGB uint8 (H, W, 3) image; features as float32."""
        img = check_image(image)
        with self._lock, torch.inference_mode():
            self.predictor.set_image(img, image_format="RGB")
            features = self.predictor.features.detach().to("cpu", torch.float32).numpy()
            original = tuple(int(v) for v in self.predictor.original_size)
            input_size = tuple(int(v) for v in self.predictor.input_size)
            self.predictor.reset_image()
        return Embedding(
            model_id=self.model_id,
            original_size=(original[0], original[1]),
            input_size=(input_size[0], input_size[1]),
            arrays={"features": features},
            weights_sha256=self.weights_sha256,
        )

    def predict(
        self,
        embedding: Embedding,
        points_xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """``SamPredictor.predict(point_coords=(x, y) points, point_labels, mask_input,
        multimask_output)`` from a stored embedding: 3 masks with multimask, else 1."""
        pts, lab = check_prompt(embedding, self.model_id, points_xy, labels)
        prior = check_mask_input(mask_input)
        features = embedding.arrays.get("features")
        if features is None or features.ndim != 4 or features.shape[0] != 1:
            raise ValueError("embedding lacks SAM 'features' of shape (1, C, h, w)")
        with self._lock, torch.inference_mode():
            p = self.predictor
            p.features = torch.from_numpy(np.ascontiguousarray(features)).to(p.device)
            p.original_size = embedding.original_size
            p.input_size = embedding.input_size
            p.is_image_set = True
            try:
                masks, iou_pred, low_res = p.predict(
                    point_coords=pts.astype(np.float32) if len(pts) else None,
                    point_labels=lab.astype(np.int64) if len(pts) else None,
                    mask_input=prior,
                    multimask_output=multimask,
                )
            finally:
                p.reset_image()
        return Prediction(
            masks.astype(bool),
            iou_pred.astype(np.float32),
            low_res.astype(np.float32),
        )
