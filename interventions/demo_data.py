"""Procedural demo scenes with exact masks and class labels (numpy + OpenCV only).

Every object is first drawn as a binary mask with OpenCV (no anti-aliasing) and the image is
then coloured through that same mask, so image and ground truth agree pixel for pixel. Image
``i`` of a data set depends only on (dataset, seed, index, size), never on how many images are
generated, so a data set of 24 images is a prefix of one of 60.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")


@dataclass(frozen=True)
class DatasetSpec:
    """How the scenes of one demo data set are drawn.

    ``object_extent`` is the target's size as a fraction of the image side; ``contrast`` the
    range of the Euclidean RGB distance between the target's colour and its surroundings;
    ``noise_sigma`` the std of additive Gaussian pixel noise; ``distractors`` how many objects
    of other classes are drawn beside the target; ``textured`` whether the background is a
    random smooth texture instead of a flat colour; ``illumination`` the amplitude of a linear
    brightness gradient across the image.
    """

    name: str
    description: str
    object_extent: tuple[float, float]
    contrast: tuple[float, float]
    noise_sigma: float
    distractors: tuple[int, int]
    textured: bool
    illumination: float


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="Clean shapes",
            description="One high-contrast object on a flat background, light noise.",
            object_extent=(0.28, 0.45),
            contrast=(140.0, 220.0),
            noise_sigma=3.0,
            distractors=(0, 0),
            textured=False,
            illumination=0.0,
        ),
        DatasetSpec(
            name="Cluttered scenes",
            description="Textured background and 3-5 distractor objects of other classes; "
            "the labelled object is the target.",
            object_extent=(0.24, 0.40),
            contrast=(70.0, 160.0),
            noise_sigma=6.0,
            distractors=(3, 5),
            textured=True,
            illumination=0.0,
        ),
        DatasetSpec(
            name="Low contrast",
            description="One object barely darker or lighter than its background, strong "
            "noise and uneven illumination.",
            object_extent=(0.24, 0.42),
            contrast=(18.0, 30.0),
            noise_sigma=22.0,
            distractors=(0, 0),
            textured=False,
            illumination=30.0,
        ),
    )
}


@dataclass(frozen=True)
class Scene:
    """One generated image: uint8 (H, W, 3) RGB image, bool (H, W) mask of the target object,
    its class index into ``CLASS_NAMES`` and the class name."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    class_name: str


def _dataset_key(dataset: str) -> int:
    return zlib.crc32(dataset.encode("utf-8"))


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(
            f"unknown demo dataset {dataset!r}; choose one of {sorted(DATASETS)}"
        ) from None


def _rotated(points: np.ndarray, angle: float, center: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T + np.asarray(center)


def _fill(size: int, polygon: np.ndarray) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def draw_shape_mask(
    class_name: str, size: int, center: tuple[float, float], extent: float, angle: float
) -> np.ndarray:
    """Binary (size, size) mask of one shape whose bounding extent is about ``extent`` pixels,
    centred at ``center`` = (x, y) and rotated by ``angle`` radians."""
    r = extent / 2.0
    cx, cy = center
    if class_name == "circle":
        canvas = np.zeros((size, size), np.uint8)
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 1, -1, lineType=cv2.LINE_8)
        return canvas.astype(bool)
    if class_name == "ring":
        canvas = np.zeros((size, size), np.uint8)
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 1, -1, lineType=cv2.LINE_8)
        cv2.circle(canvas, (round(cx), round(cy)), round(r * 0.55), 0, -1, lineType=cv2.LINE_8)
        return canvas.astype(bool)
    if class_name == "square":
        h = r / np.sqrt(2.0)  # diagonal = extent, whatever the rotation
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    elif class_name == "triangle":
        t = np.deg2rad([90.0, 210.0, 330.0])
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * r
    elif class_name == "star":
        t = np.deg2rad(np.arange(10) * 36.0 - 90.0)
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([np.cos(t) * radii, np.sin(t) * radii], axis=1)
    elif class_name == "cross":
        a, b = r, r * 0.34
        pts = np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
             [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )  # fmt: skip
    else:
        raise ValueError(f"unknown shape {class_name!r}; choose one of {CLASS_NAMES}")
    return _fill(size, _rotated(pts, angle, center))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=3)


def _colour_at_distance(
    rng: np.random.Generator, reference: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """A colour whose RGB distance to ``reference`` lies in [lo, hi] and that stays in
    [0, 255] (rejection sampling over random directions)."""
    for _ in range(200):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        colour = reference + direction * rng.uniform(lo, hi)
        if np.all(colour >= 0.0) and np.all(colour <= 255.0):
            return colour
    # Reference too close to a corner for that direction set: go towards the far corner.
    far = np.where(reference < 127.5, 255.0, 0.0)
    direction = (far - reference) / (np.linalg.norm(far - reference) + 1e-12)
    return np.clip(reference + direction * lo, 0.0, 255.0)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour texture: a sum of random sinusoidal gratings per channel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    base = rng.uniform(60.0, 200.0, size=3)
    out = np.empty((size, size, 3))
    for ch in range(3):
        field = np.zeros((size, size))
        for _ in range(4):
            freq = rng.uniform(1.0, 5.0)
            theta = rng.uniform(0.0, np.pi)
            phase = rng.uniform(0.0, 2 * np.pi)
            field += np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        out[..., ch] = base[ch] + 18.0 * field
    return out


def _place(rng: np.random.Generator, size: int, extent: float) -> tuple[tuple[float, float], float]:
    margin = extent / 2.0 + 2.0
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    return (cx, cy), rng.uniform(0.0, 2 * np.pi)


def _label_for(dataset: str, index: int, seed: int) -> int:
    """Balanced labels: each block of six consecutive images holds every class once, in an
    order drawn from (seed, dataset, block)."""
    block_rng = np.random.default_rng([seed, _dataset_key(dataset), index // 6, 1])
    return int(block_rng.permutation(len(CLASS_NAMES))[index % len(CLASS_NAMES)])


def generate_scene(dataset: str, index: int, seed: int = 0, size: int = 128) -> Scene:
    """Image ``index`` of demo ``dataset``; deterministic in (dataset, index, seed, size)."""
    spec = _spec(dataset)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    rng = np.random.default_rng([seed, _dataset_key(dataset), index, 0])
    label = _label_for(dataset, index, seed)
    class_name = CLASS_NAMES[label]

    if spec.textured:
        image = _texture(rng, size)
    else:
        image = np.broadcast_to(_random_colour(rng), (size, size, 3)).copy()

    # Distractors first (other classes), the target last, so the target is fully visible and
    # its mask is exactly the set of pixels coloured with its colour.
    n_distractors = int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))
    others = [k for k in range(len(CLASS_NAMES)) if k != label]
    for _ in range(n_distractors):
        other = CLASS_NAMES[int(rng.choice(others))]
        extent = rng.uniform(0.15, 0.30) * size
        center, angle = _place(rng, size, extent)
        d_mask = draw_shape_mask(other, size, center, extent, angle)
        image[d_mask] = _random_colour(rng)

    extent = rng.uniform(*spec.object_extent) * size
    center, angle = _place(rng, size, extent)
    mask = draw_shape_mask(class_name, size, center, extent, angle)
    surround = image[cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
                     & ~mask].mean(axis=0)  # fmt: skip
    image[mask] = _colour_at_distance(rng, surround, *spec.contrast)

    if spec.illumination > 0.0:
        theta = rng.uniform(0.0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
        image += (spec.illumination * 2.0 * (xx * np.cos(theta) + yy * np.sin(theta)))[..., None]
    image += rng.normal(0.0, spec.noise_sigma, size=image.shape)
    image_u8 = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return Scene(image=image_u8, mask=mask, label=label, class_name=class_name)


def generate_dataset(dataset: str, n: int = 24, seed: int = 0, size: int = 128) -> list[Scene]:
    """The first ``n`` scenes of ``dataset`` (scene i equals ``generate_scene(dataset, i)``)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [generate_scene(dataset, i, seed=seed, size=size) for i in range(n)]
