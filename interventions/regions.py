"""Human regions set beside the model's maps: area, agreement with an explanation's top region,
overlap with the high-uncertainty region. Pure numpy.

- area fraction = |R| / (H * W);
- top-region IoU = |R & T| / |R | T| where T holds the |R| most salient pixels of the map
  (descending, stable ties: the pixel order of RISE's causal metric, Petsiuk et al. 2018), so a
  region that deletes exactly what the explanation ranks first scores 1;
- uncertainty overlap = |R & (U > t)| / |R|, the share of the region inside VOICE's
  high-uncertainty region (t = 0.1 as VOICE's own IoU statistic, Prabhushankar & AlRegib 2024).
"""

from __future__ import annotations

import cv2
import numpy as np

UNCERTAINTY_THRESHOLD = 0.1


def _region(region: np.ndarray) -> np.ndarray:
    r = np.asarray(region)
    if r.ndim != 2:
        raise ValueError(f"region must be a 2-D (H, W) mask, got shape {r.shape}")
    return r != 0


def _map(values: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {m.shape}")
    if m.shape != shape:
        raise ValueError(
            f"{name} shape {m.shape} differs from the region shape {shape}; resize it first"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return m


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized to (H, W) bilinearly with half-pixel centres (the align_corners=False
    convention of the explanations); float32, unchanged when the size already matches."""
    m = np.asarray(values, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"map must be 2-D, got shape {m.shape}")
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def area_fraction(region: np.ndarray) -> float:
    """|R| / (H * W)."""
    r = _region(region)
    return float(np.count_nonzero(r)) / float(r.size) if r.size else 0.0


def top_region(saliency: np.ndarray, n_pixels: int) -> np.ndarray:
    """Bool mask of the ``n_pixels`` most salient pixels (descending, stable ties)."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim != 2:
        raise ValueError(f"saliency must be a 2-D (H, W) map, got shape {sal.shape}")
    if not 0 <= n_pixels <= sal.size:
        raise ValueError(f"n_pixels must lie in 0..{sal.size}, got {n_pixels}")
    order = np.argsort(-sal.ravel(), kind="stable")
    out = np.zeros(sal.size, dtype=bool)
    out[order[:n_pixels]] = True
    return out.reshape(sal.shape)


def top_region_iou(region: np.ndarray, saliency: np.ndarray) -> float:
    """IoU of the region R with the same-area top region of ``saliency`` (0 for an empty R)."""
    r = _region(region)
    sal = _map(saliency, r.shape, "saliency")
    n = int(np.count_nonzero(r))
    if n == 0:
        return 0.0
    top = top_region(sal, n)
    inter = int(np.count_nonzero(r & top))
    return inter / int(np.count_nonzero(r | top))


def uncertainty_overlap(
    region: np.ndarray, uncertainty: np.ndarray, threshold: float = UNCERTAINTY_THRESHOLD
) -> float:
    """|R & (U > threshold)| / |R|: the share of the region inside the high-uncertainty region
    (0 for an empty R)."""
    r = _region(region)
    u = _map(uncertainty, r.shape, "uncertainty")
    n = int(np.count_nonzero(r))
    if n == 0:
        return 0.0
    return int(np.count_nonzero(r & (u > threshold))) / n
