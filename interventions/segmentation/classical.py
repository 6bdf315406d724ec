"""A deterministic point-seeded segmenter without weights (the ``classical`` backend).

``embed`` estimates the pixel noise (Immerkær, 1996) and stores three smoothed versions of the
image: noise-adaptive Gaussian, edge-preserving bilateral and strong Gaussian. ``predict`` seeds
a marker watershed (Meyer, 1994; OpenCV's ``cv2.watershed``) with the green points as object and
the red points (or, without red points, the image border) as background on each version, removes
pixels that look like the local background (holes, e.g. of a ring), and keeps the pieces that
hold a green point. Three candidates come back, with a boundary-contrast score as predicted IoU.
"""

from __future__ import annotations

import cv2
import numpy as np

from interventions.segmentation.backend import (
    LOW_RES,
    Embedding,
    Prediction,
    check_image,
    check_mask_input,
    check_prompt,
    low_res_frame,
)

MODEL_ID = "classical-v1"
LEVELS = ("adaptive", "fine", "coarse")  # candidate order: masks[0] uses "adaptive"
_LOGIT_CLIP = 20.0


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Std of additive Gaussian noise from the grey image: sqrt(pi/2) / (6 (W-2)(H-2)) *
    sum |I * N| with N the 3x3 Laplacian difference mask (Immerkær, 1996)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if min(grey.shape) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(grey, -1, kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(response).mean() / 6.0)


def _stretch(image: np.ndarray) -> np.ndarray:
    """Per-channel linear stretch of the 1st..99th percentile to 0..255 (uint8), so weak edges
    survive the 8-bit neighbour differences ``cv2.watershed`` floods by."""
    lo = np.percentile(image, 1, axis=(0, 1))
    hi = np.percentile(image, 99, axis=(0, 1))
    out = (image - lo) / np.maximum(hi - lo, 1.0) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _smoothed_levels(image: np.ndarray, noise: float) -> dict[str, np.ndarray]:
    f = image.astype(np.float32)
    adaptive = cv2.GaussianBlur(f, (0, 0), max(0.5, 0.2 * noise))
    coarse = cv2.GaussianBlur(f, (0, 0), max(1.5, 0.35 * noise))
    fine = cv2.bilateralFilter(image, 9, 3.0 * noise + 3.0, 5.0)
    return {"adaptive": _stretch(adaptive), "fine": fine, "coarse": _stretch(coarse)}


def _gradient(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt((gx * gx + gy * gy).sum(axis=2))


class ClassicalBackend:
    """Marker-watershed segmenter with the same ``embed`` / ``predict`` calls as SAM."""

    model_id: str = MODEL_ID
    weights_sha256: str | None = None

    def embed(self, image: np.ndarray) -> Embedding:
        """Noise estimate + three smoothed uint8 versions of the image (see module doc)."""
        img = check_image(image)
        noise = estimate_noise_sigma(img)
        arrays = _smoothed_levels(img, noise)
        arrays["noise_sigma"] = np.array(noise, dtype=np.float64)
        size = (int(img.shape[0]), int(img.shape[1]))
        return Embedding(self.model_id, size, size, arrays, None)

    def predict(
        self,
        embedding: Embedding,
        points_xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """Up to three watershed masks seeded by the points; with ``mask_input`` (previous
        low-res logits) the third candidate also takes the previous mask's deep interior and
        exterior as seeds. ``multimask=False`` returns the first candidate only."""
        pts, lab = check_prompt(embedding, self.model_id, points_xy, labels)
        prior = check_mask_input(mask_input)
        missing = [name for name in LEVELS if name not in embedding.arrays]
        if missing:
            raise ValueError(f"embedding lacks the classical arrays {missing}")
        h, w = embedding.original_size
        cols = np.floor(pts[:, 0]).astype(np.int64)
        rows = np.floor(pts[:, 1]).astype(np.int64)
        green = np.zeros((h, w), bool)
        red = np.zeros((h, w), bool)
        green[rows[lab == 1], cols[lab == 1]] = True
        red[rows[lab == 0], cols[lab == 0]] = True
        # A pixel clicked both green and red seeds neither side (SAM, too, gets no clear answer
        # there); without any green seed there is no object to grow: empty masks, score 0.
        conflict = green & red
        green &= ~conflict
        red &= ~conflict
        if not green.any():
            k = len(LEVELS) if multimask else 1
            empty = np.zeros((k, h, w), bool)
            logits = np.stack([_mask_to_logits(m) for m in empty])
            return Prediction(empty, np.zeros(k, dtype=np.float32), logits)

        prior_mask = None if prior is None else _logits_to_mask(prior[0], (h, w))
        levels = LEVELS if multimask else LEVELS[:1]
        gradient = _gradient(embedding.arrays["adaptive"])
        masks, scores = [], []
        for i, name in enumerate(levels):
            image = embedding.arrays[name]
            if image.shape != (h, w, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"embedding array {name!r} has shape {image.shape}, expected {(h, w, 3)}"
                )
            obj, bg = green, red
            if prior_mask is not None and i == len(LEVELS) - 1:
                obj, bg = _prior_seeds(prior_mask, green, red)
            mask = _segment(image, obj, bg, green)
            masks.append(mask)
            scores.append(_boundary_score(mask, gradient))
        stack = np.stack(masks)
        logits = np.stack([_mask_to_logits(m) for m in masks])
        return Prediction(stack, np.asarray(scores, dtype=np.float32), logits)


def _segment(image: np.ndarray, obj: np.ndarray, bg: np.ndarray, green: np.ndarray) -> np.ndarray:
    """Watershed from object/background seed pixels, then colour clean-up (see module doc)."""
    h, w = obj.shape
    # Pad by one pixel: cv2.watershed overwrites the image border of the marker map with -1.
    padded = cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    markers = np.zeros((h + 2, w + 2), np.int32)
    if np.any(bg):
        markers[1:-1, 1:-1][bg] = 1
    else:  # no red point: the image border is background
        markers[1, 1:-1] = markers[-2, 1:-1] = markers[1:-1, 1] = markers[1:-1, -2] = 1
        markers[1:-1, 1:-1][obj] = 0
    markers[1:-1, 1:-1][obj] = 2
    cv2.watershed(padded, markers)
    regions = markers[1:-1, 1:-1]
    inside = regions == 2
    outside = regions == 1
    if not inside.any() or not outside.any():
        return inside
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    # Watershed lines (-1) go to the side whose median colour is nearer.
    line = regions == -1
    line_lab = lab[line]
    nearer_in = _sqdist(line_lab, np.median(lab[inside], axis=0)) < _sqdist(
        line_lab, np.median(lab[outside], axis=0)
    )
    mask = inside.copy()
    mask[line] = nearer_in
    # Drop pixels nearer to the colour of a 3-pixel band around the mask (a ring's hole, a
    # background bay), keep the connected pieces holding a green point.
    band = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
    if not band.any():
        return mask
    mask_lab = lab[mask]
    keep = np.zeros_like(mask)
    keep[mask] = _sqdist(mask_lab, np.median(mask_lab, axis=0)) <= _sqdist(
        mask_lab, np.median(lab[band], axis=0)
    )
    _, pieces = cv2.connectedComponents(keep.astype(np.uint8), connectivity=4)
    ids = np.unique(pieces[green & keep])
    ids = ids[ids > 0]
    if ids.size == 0:
        return mask
    return np.isin(pieces, ids)


def _sqdist(colours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    diff = colours - ref
    return np.einsum("ij,ij->i", diff, diff)


def _boundary_score(mask: np.ndarray, gradient: np.ndarray) -> float:
    """Predicted IoU heuristic in [0, 1]: e_b / (e_b + e_n), with e_b the mean gradient on the
    mask's boundary and e_n the mean gradient 2-4 pixels either side of it (contrast of the
    boundary against its surroundings), 0 for an empty or full mask."""
    if not mask.any() or mask.all():
        return 0.0
    m = mask.astype(np.uint8)
    k3 = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(m, k3) != cv2.erode(m, k3)
    near = cv2.dilate(m, np.ones((9, 9), np.uint8)) != cv2.erode(m, np.ones((9, 9), np.uint8))
    ring = near & ~cv2.dilate(boundary.astype(np.uint8), k3).astype(bool)
    e_b = float(gradient[boundary].mean())
    e_n = float(gradient[ring].mean()) if ring.any() else 0.0
    return e_b / (e_b + e_n) if e_b + e_n > 0 else 0.0


def _mask_to_logits(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the mask boundary (positive inside) in low-res pixels, placed like
    SAM's low-res logits: longest side 256, padded at the bottom/right, clipped to +-20."""
    m = mask.astype(np.uint8)
    if not m.any():  # no boundary to measure from: everywhere outside
        return np.full((LOW_RES, LOW_RES), -_LOGIT_CLIP, np.float32)
    sd = cv2.distanceTransform(m, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    lh, lw = low_res_frame(mask.shape)
    scale = LOW_RES / max(mask.shape)
    small = cv2.resize(sd * scale, (lw, lh), interpolation=cv2.INTER_LINEAR)
    out = np.full((LOW_RES, LOW_RES), -_LOGIT_CLIP, np.float32)
    out[:lh, :lw] = np.clip(small, -_LOGIT_CLIP, _LOGIT_CLIP)
    return out


def _logits_to_mask(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the padded low-res logits to the image frame, resize to ``size``, threshold at 0."""
    lh, lw = low_res_frame(size)
    crop = np.ascontiguousarray(logits[:lh, :lw])
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) > 0


def _prior_seeds(
    prior: np.ndarray, green: np.ndarray, red: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Extra seeds from a previous mask: its interior deeper than a margin becomes object and
    its exterior beyond the margin background, except within two margins of a point of the
    other colour (so a new correction is not overruled)."""
    if not prior.any() or prior.all():
        return green, red
    inner = cv2.distanceTransform(prior.astype(np.uint8), cv2.DIST_L2, 3)
    outer = cv2.distanceTransform((~prior).astype(np.uint8), cv2.DIST_L2, 3)
    margin = max(2.0, 0.3 * float(inner.max()))
    far_from_red = cv2.distanceTransform((~red).astype(np.uint8), cv2.DIST_L2, 3) > 2 * margin
    far_from_green = cv2.distanceTransform((~green).astype(np.uint8), cv2.DIST_L2, 3) > 2 * margin
    obj = green | ((inner >= margin) & far_from_red & ~red)
    bg = (red | ((outer >= margin) & far_from_green)) & ~obj
    return obj, bg
