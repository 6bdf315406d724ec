"""Automated point-prompt strategies (docs/design.md "Automated prompting baselines"; the families
benchmarked against humans on PointPrompt by Quesada et al., 2024). Pure numpy / OpenCV, seeded.

Every strategy picks `n` points inside a region (the ground-truth mask for green points, its
complement for red ones) and returns them as float (n x 2) arrays of (x = column, y = row):

- random: uniform over the region's pixels, without replacement.
- kmedoids: the medoids of k-medoids (Voronoi iteration, k-means++ seeding) over the region's
  pixels (a seeded subsample of at most 2,000 pixels).
- shi_tomasi: Shi-Tomasi corners (cv2.goodFeaturesToTrack, quality 0.01) of the grey image
  inside the eroded region (3 x 3 kernel, 2 iterations), strongest first; topped up with random
  points of the eroded region when it has fewer corners.
- entropy: a random seed pixel; then the pixels whose local entropy (7 x 7 window, 16 grey
  levels) differs most from the seed's, taken greedily at least `min_gap` pixels apart.
- max_distance: a random seed pixel; then farthest-point sampling: each next point is the
  region pixel farthest from the seed and the points taken so far.
The seed pixel of entropy / max_distance is a reference, not a prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

STRATEGIES = ("random", "kmedoids", "shi_tomasi", "entropy", "max_distance")
MAX_MEDOID_PIXELS = 2000


def _region_pixels(region: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(region)
    return np.stack([cols, rows], axis=1).astype(np.float64)


def random_points(
    region: np.ndarray, n: int, rng: np.random.Generator, grey: np.ndarray
) -> np.ndarray:
    pixels = _region_pixels(region)
    take = rng.choice(len(pixels), size=n, replace=n > len(pixels))
    return pixels[take]


def kmedoids_points(
    region: np.ndarray, n: int, rng: np.random.Generator, grey: np.ndarray, iterations: int = 30
) -> np.ndarray:
    pixels = _region_pixels(region)
    if len(pixels) > MAX_MEDOID_PIXELS:
        pixels = pixels[np.sort(rng.choice(len(pixels), size=MAX_MEDOID_PIXELS, replace=False))]
    if n >= len(pixels):
        return pixels[rng.choice(len(pixels), size=n, replace=n > len(pixels))]
    dist = np.sqrt(((pixels[:, None, :] - pixels[None, :, :]) ** 2).sum(axis=2))
    medoids = [int(rng.integers(len(pixels)))]
    for _ in range(1, n):  # k-means++ seeding
        nearest = dist[:, medoids].min(axis=1) ** 2
        medoids.append(int(rng.choice(len(pixels), p=nearest / nearest.sum())))
    medoids = np.asarray(medoids)
    for _ in range(iterations):
        labels = np.argmin(dist[:, medoids], axis=1)
        new = medoids.copy()
        for k in range(n):
            members = np.flatnonzero(labels == k)
            if len(members):
                new[k] = members[np.argmin(dist[np.ix_(members, members)].sum(axis=1))]
        if np.array_equal(new, medoids):
            break
        medoids = new
    return pixels[medoids]


def _eroded(region: np.ndarray) -> np.ndarray:
    eroded = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(
        bool
    )
    return eroded if eroded.any() else region


def shi_tomasi_points(
    region: np.ndarray, n: int, rng: np.random.Generator, grey: np.ndarray
) -> np.ndarray:
    inner = _eroded(region)
    corners = cv2.goodFeaturesToTrack(
        grey, maxCorners=n, qualityLevel=0.01, minDistance=3, mask=inner.astype(np.uint8) * 255
    )
    found = np.zeros((0, 2)) if corners is None else corners.reshape(-1, 2).astype(np.float64)
    found = np.floor(found[:n])
    if len(found) < n:
        found = np.concatenate([found, random_points(inner, n - len(found), rng, grey)])
    return found


def local_entropy(grey: np.ndarray, window: int = 7, levels: int = 16) -> np.ndarray:
    """Shannon entropy (bits) of the grey-level histogram in a window around each pixel."""
    quantised = (grey.astype(np.int32) * levels) // 256
    entropy = np.zeros(grey.shape, dtype=np.float64)
    for level in range(levels):
        p = cv2.boxFilter(
            (quantised == level).astype(np.float64),
            -1,
            (window, window),
            normalize=True,
            borderType=cv2.BORDER_REFLECT,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy -= np.where(p > 0, p * np.log2(p), 0.0)
    return entropy


def entropy_points(
    region: np.ndarray, n: int, rng: np.random.Generator, grey: np.ndarray, min_gap: float = 3.0
) -> np.ndarray:
    pixels = _region_pixels(region)
    entropy = local_entropy(grey)[region]
    seed = int(rng.integers(len(pixels)))
    order = np.argsort(-np.abs(entropy - entropy[seed]), kind="stable")
    chosen: list[int] = []
    for k in order:
        if all(np.hypot(*(pixels[k] - pixels[j])) >= min_gap for j in chosen):
            chosen.append(int(k))
            if len(chosen) == n:
                break
    if len(chosen) < n:  # region too small for the gap
        return np.concatenate([pixels[chosen], random_points(region, n - len(chosen), rng, grey)])
    return pixels[chosen]


def max_distance_points(
    region: np.ndarray, n: int, rng: np.random.Generator, grey: np.ndarray
) -> np.ndarray:
    pixels = _region_pixels(region)
    seed = pixels[int(rng.integers(len(pixels)))]
    nearest = np.hypot(*(pixels - seed).T)
    chosen = []
    for _ in range(n):
        k = int(np.argmax(nearest))
        chosen.append(k)
        nearest = np.minimum(nearest, np.hypot(*(pixels - pixels[k]).T))
    return pixels[chosen]


_STRATEGY_FUNCTIONS: dict[str, Callable] = {
    "random": random_points,
    "kmedoids": kmedoids_points,
    "shi_tomasi": shi_tomasi_points,
    "entropy": entropy_points,
    "max_distance": max_distance_points,
}


def select_points(
    strategy: str, image: np.ndarray, mask: np.ndarray, n_green: int, n_red: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(green, red) float (n x 2) (x, y) arrays of `strategy` for one image; same seed, same points."""
    if strategy not in _STRATEGY_FUNCTIONS:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the image {image.shape[:2]}")
    for count, name in ((n_green, "n_green"), (n_red, "n_red")):
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {count!r}")
    if n_green and not mask.any():
        raise ValueError("the mask is empty: no place for green points")
    if n_red and mask.all():
        raise ValueError("the mask covers the whole image: no place for red points")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
    pick = _STRATEGY_FUNCTIONS[strategy]
    green = pick(mask, int(n_green), rng, grey) if n_green else np.zeros((0, 2))
    red = pick(~mask, int(n_red), rng, grey) if n_red else np.zeros((0, 2))
    return green.reshape(-1, 2).astype(np.float64), red.reshape(-1, 2).astype(np.float64)
