"""What every segmentation backend shares: the spec, the embedding, the prediction, input checks.

Shape of the API follows segment-anything's ``SamPredictor`` (Kirillov et al., 2023): an
expensive ``embed`` once per image and a cheap ``predict`` per prompt from that embedding.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Protocol, runtime_checkable

import numpy as np

LOW_RES = 256  # side of SAM's low-resolution mask logits (and of ``mask_input``)


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to build: ``kind`` "sam" (``architecture`` vit_h / vit_l / vit_b and a
    checkpoint file at ``weights_path``) or "classical" (no weights); ``device`` e.g. "cpu",
    "cuda:0" (default: CUDA when available)."""

    kind: Literal["sam", "classical"]
    architecture: str = ""
    weights_path: str | None = None
    device: str | None = None


@dataclass
class Embedding:
    """The per-image state a backend's ``predict`` needs: named float/int arrays plus the
    original (H, W) and the model-input (h, w) sizes. Saved as one ``.npz`` without pickles."""

    model_id: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    weights_sha256: str | None = None

    def save(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        """Write to a path or binary file object as an uncompressed ``.npz``."""
        payload: dict[str, np.ndarray] = {
            "meta_model_id": np.array(self.model_id),
            "meta_weights_sha256": np.array(self.weights_sha256 or ""),
            "meta_original_size": np.asarray(self.original_size, dtype=np.int64),
            "meta_input_size": np.asarray(self.input_size, dtype=np.int64),
        }
        for name, arr in self.arrays.items():
            if arr.dtype == object:
                raise ValueError(f"embedding array {name!r} has dtype object; not storable")
            payload[f"arr_{name}"] = arr
        np.savez(target, **payload)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.save(buf)
        return buf.getvalue()

    @classmethod
    def load(cls, source: str | os.PathLike[str] | BinaryIO) -> Embedding:
        """Read an embedding written by ``save`` (``allow_pickle=False``: object arrays fail)."""
        try:
            with np.load(source, allow_pickle=False) as data:
                files = set(data.files)
                needed = {"meta_model_id", "meta_original_size", "meta_input_size"}
                if not needed <= files:
                    raise ValueError(f"embedding file lacks {sorted(needed - files)}")
                arrays = {k[4:]: data[k] for k in data.files if k.startswith("arr_")}
                sha = str(data["meta_weights_sha256"]) if "meta_weights_sha256" in files else ""
                return cls(
                    model_id=str(data["meta_model_id"]),
                    original_size=_pair(data["meta_original_size"]),
                    input_size=_pair(data["meta_input_size"]),
                    arrays=arrays,
                    weights_sha256=sha or None,
                )
        except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a readable embedding file: {exc}") from exc

    @classmethod
    def from_bytes(cls, raw: bytes) -> Embedding:
        return cls.load(io.BytesIO(raw))


def _pair(arr: np.ndarray) -> tuple[int, int]:
    vals = np.asarray(arr).ravel()
    if vals.size != 2:
        raise ValueError(f"expected a (2,) size array, got shape {np.asarray(arr).shape}")
    return int(vals[0]), int(vals[1])


@dataclass(frozen=True)
class Prediction:
    """Candidate masks (k, H, W) bool at the original size, the model's own IoU estimate per
    mask (k,), and low-resolution logits (k, 256, 256) usable as the next ``mask_input``."""

    masks: np.ndarray
    predicted_iou: np.ndarray
    low_res_logits: np.ndarray


@runtime_checkable
class SegmentationBackend(Protocol):
    model_id: str
    weights_sha256: str | None

    def embed(self, image: np.ndarray) -> Embedding: ...

    def predict(
        self,
        embedding: Embedding,
        points_xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction: ...


def check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous uint8 (H, W, 3) array or raise ValueError saying why."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image is too small: {arr.shape}")
    return np.ascontiguousarray(arr)


def check_prompt(
    embedding: Embedding, model_id: str, points_xy: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate points (n, 2) as (x = column, y = row) inside the original image and labels
    (n,) in {0 = red/background, 1 = green/object}; return them as float64 and int64."""
    if embedding.model_id != model_id:
        raise ValueError(
            f"embedding was made by model {embedding.model_id!r}, not by this backend {model_id!r}"
        )
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points_xy must have shape (n, 2) of (x, y), got {pts.shape}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != pts.shape[0]:
        raise ValueError(f"labels must have shape ({pts.shape[0]},), got {lab.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points_xy contains NaN or infinite coordinates")
    if lab.size and not np.all(np.isin(lab, (0, 1))):
        raise ValueError(f"labels must be 0 (red) or 1 (green), got {np.unique(lab).tolist()}")
    h, w = embedding.original_size
    outside = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise ValueError(
            f"point {i} at (x={pts[i, 0]:g}, y={pts[i, 1]:g}) is outside the image "
            f"(width {w}, height {h})"
        )
    return pts, lab.astype(np.int64)


def check_mask_input(mask_input: np.ndarray | None) -> np.ndarray | None:
    """``mask_input`` as float32 (1, 256, 256) low-res logits, or None."""
    if mask_input is None:
        return None
    arr = np.asarray(mask_input, dtype=np.float32)
    if arr.shape == (LOW_RES, LOW_RES):
        arr = arr[None]
    if arr.shape != (1, LOW_RES, LOW_RES):
        raise ValueError(f"mask_input must have shape (1, 256, 256) or (256, 256), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("mask_input contains NaN or infinite values")
    return arr


def low_res_frame(original_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the image inside SAM's padded 256 x 256 low-res frame (longest side 256)."""
    h, w = original_size
    scale = LOW_RES / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)
