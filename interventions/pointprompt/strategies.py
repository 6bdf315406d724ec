"""PointPrompt's automated point-selection strategies as released (olivesgatech/PointPrompt
`point_sampling/point_selection.py`, driven by `point_sampling/main.py`); docs/pointprompt.md
"Strategies as released" names every quirk reproduced here.

Our own implementation, vectorised, that draws the same random numbers in the same order as the
released code: a run seeds numpy's legacy generator and torch's CPU generator once with its seed
(`ReleasedRandom`, equal to `np.random.seed(S)` + `torch.manual_seed(S)` but private, so a worker's
global state is left alone) and then takes the images in the data set's index order, so the
points equal those the released `main.py` selects for the same images, masks and seed.

Points are float32 (k x 2) arrays of (x = column, y = row). The released strategies place, per
image: `rand`, `shi-tomasi`, `kmediod`: exactly the counts asked; `entropy` and `max_dist`: the
random initial point plus the counts asked (count + 1 of each kind), as `main.py` concatenates
them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from interventions.pointprompt.kmedoids import kmedoids_alternate
from interventions.pointprompt.released_names import RELEASED_STRATEGIES, UNAVAILABLE

GRID_SIZE = 9  # the entropy window (select_grid's grid_size)
KMEDOID_SUBSAMPLE = 1800  # extract_kmedoid_points' subsample
CORNER_KMEDOID_SUBSAMPLE = 2000  # the k-medoid top-up of extract_corner_points
CORNER_QUALITY = 0.001
EROSION_STEPS = (0.06, 0.02, 0.01)  # share of the region's bounding-box diagonal
MIN_ERODED_PIXELS = 10
CANDIDATE_SHARE = 0.15  # share of region pixels scored by entropy / max_dist
# np.finfo(float).eps added to a float32 histogram: float32 under numpy 1.x (value-based casting,
# the released environment); numpy 2 would widen that line to float64. We keep float32.
_EPS32 = np.float32(np.finfo(float).eps)
_CHUNK = 4096  # entropy candidates per vectorised block


class ReleasedRandom:
    """The two random streams of a released run: numpy's legacy MT19937 (np.random.seed(S)) and
    torch's CPU generator (torch.manual_seed(S)). Seed once per run; images in index order."""

    def __init__(self, seed: int):
        if (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**32
        ):
            raise ValueError(f"seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")
        self.seed = int(seed)
        self.numpy = np.random.RandomState(self.seed)
        self.torch = torch.Generator().manual_seed(self.seed)

    def randperm(self, n: int) -> np.ndarray:
        return torch.randperm(n, generator=self.torch).numpy()


def _region(current: np.ndarray, mode: str) -> np.ndarray:
    return current if mode == "inc" else (1 - current).astype(np.uint8)


def _pixels(region: np.ndarray, what: str) -> np.ndarray:
    pixels = np.argwhere(region != 0)  # (row, col), row-major: torch's nonzero() order
    if not len(pixels):
        raise ValueError(f"the {what} region is empty: no pixel to place a point on")
    return pixels


def _repeat(pixels: np.ndarray, n: int) -> np.ndarray:
    return np.tile(pixels, (n // len(pixels) + 1, 1))[:n]


def _xy(rows_cols: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(rows_cols, np.float32)[:, ::-1])


def random_points(current: np.ndarray, n: int, mode: str, rng: ReleasedRandom) -> np.ndarray:
    """extract_random_mask_points: n region pixels by one torch randperm (none drawn when the
    region has fewer than n pixels: they are repeated in order)."""
    pixels = _pixels(_region(current, mode), "inclusion" if mode == "inc" else "exclusion")
    if len(pixels) < n:
        return _xy(_repeat(pixels, n))
    return _xy(pixels[rng.randperm(len(pixels))[:n]])


def kmedoid_points(
    current: np.ndarray, n: int, mode: str, rng: ReleasedRandom, subsample: int = KMEDOID_SUBSAMPLE
) -> np.ndarray:
    """extract_kmedoid_points: k-medoids (k = n) of the first `subsample` pixels of a torch
    randperm of the region's pixels; the medoids in cluster order."""
    pixels = _pixels(_region(current, mode), "inclusion" if mode == "inc" else "exclusion")
    if len(pixels) < n:
        return _xy(_repeat(pixels, n))
    sample = pixels[rng.randperm(len(pixels))[:subsample]].astype(np.float32)
    return _xy(kmedoids_alternate(sample, n).centers)


def _bbox_diagonal(region: np.ndarray) -> float:
    rows, cols = np.nonzero(region)
    dy, dx = int(rows.max() - rows.min()), int(cols.max() - cols.min())
    return float(np.sqrt(np.float32(dy * dy + dx * dx)))  # torch.norm of a float32 pair


def _eroded(region: np.ndarray, share: float) -> np.ndarray:
    size = int(_bbox_diagonal(region) * share)
    # size 0 gives an empty kernel, which OpenCV reads as its default 3 x 3 (as released)
    return cv2.erode(region, np.ones((size, size), np.uint8), iterations=1)


def corner_points(
    image: np.ndarray, current: np.ndarray, n: int, mode: str, rng: ReleasedRandom
) -> np.ndarray:
    """extract_corner_points: Shi-Tomasi corners of the grey image inside the eroded region
    (erosion 6%, else 2%, else 1% of the region's bounding-box diagonal, else none, whichever
    first leaves >= 10 pixels), strongest first, at least diagonal / n apart; topped up with
    k-medoid points of the whole region (subsample 2000)."""
    region = _region(current, mode)
    _pixels(region, "inclusion" if mode == "inc" else "exclusion")
    inner = region
    for share in EROSION_STEPS:
        eroded = _eroded(region, share)
        if int(eroded.sum()) >= MIN_ERODED_PIXELS:
            inner = eroded
            break
    found = cv2.goodFeaturesToTrack(
        image=cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
        maxCorners=n,
        qualityLevel=CORNER_QUALITY,
        minDistance=_bbox_diagonal(inner) / n,
        mask=inner,
        blockSize=3,
        gradientSize=3,
    )
    corners = np.zeros((0, 2), np.float32) if found is None else found.reshape(-1, 2)
    if len(corners) < n:
        extra = kmedoid_points(region, n - len(corners), "inc", rng, CORNER_KMEDOID_SUBSAMPLE)
        corners = np.concatenate([corners, extra])
    return corners.astype(np.float32)


def _candidates(region: np.ndarray, n: int, rng: ReleasedRandom, twice: bool):
    """The scored pixels of get_entropy_points / get_distance_points: 15% of the region (more,
    by the released ladder, when that is fewer than n), drawn by numpy's legacy generator."""
    inds = np.argwhere(region == 1)
    if not len(inds):
        raise ValueError("the region is empty: no pixel to place a point on")
    amt, base = int(CANDIDATE_SHARE * len(inds)), 0.5
    while amt < n and base <= 1.0:  # base runs 0.5, 0.6, ..., 0.9999999999999999
        amt = int(base * len(inds))
        base += 0.1
    if amt < n:
        amt = n = len(inds)
    pool = rng.numpy.permutation(np.arange(len(inds))) if twice else np.arange(len(inds))
    return inds[rng.numpy.choice(pool, size=amt, replace=False)], n


def _pick(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    if n == 1:  # the first strict maximum above 0, else the released default point (0, 0)
        best = int(np.argmax(scores))
        chosen = candidates[best] if scores[best] > 0 else np.zeros(2, np.int64)
        return _xy(chosen[None, :])
    order = np.argsort(-scores, kind="stable")[:n]  # repeated list.index(max): first max first
    return _xy(candidates[order])


def _window(image_shape, x: int, y: int) -> tuple[int, int, int, int]:
    """select_grid's window around (x = column, y = row), as (row0, row1, col0, col1)."""
    h, w = image_shape[:2]
    half = GRID_SIZE // 2
    x0 = x - half if x - half > 0 else 0
    y0 = y - half if y - half > 0 else 0
    x1 = x0 + GRID_SIZE if x0 + GRID_SIZE < w else w
    y1 = y0 + GRID_SIZE if y0 + GRID_SIZE < h else h
    return y0, y1, x0, x1


def _entropy_of_counts(counts: np.ndarray) -> np.ndarray:
    """image_entropy of windows from their (m x 256) grey histograms, in float32 as released."""
    hist = counts.astype(np.float32)
    total = hist.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hist / total
        return -np.sum(p * np.log2(p + _EPS32), axis=1)


def entropy_points(
    input_point: np.ndarray, region: np.ndarray, image: np.ndarray, n: int, rng: ReleasedRandom
) -> np.ndarray:
    """get_entropy_points: the candidates whose 9 x 9 window's grey-histogram entropy differs
    most from the initial point's window; the candidates' windows are taken with row and column
    swapped (as released); an empty window has entropy 0."""
    candidates, n = _candidates(region, n, rng, twice=True)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # per pixel, the same as per window
    h, w = grey.shape
    y0, y1, x0, x1 = _window(
        grey.shape, int(np.floor(input_point[0])), int(np.floor(input_point[1]))
    )
    centre = np.bincount(grey[y0:y1, x0:x1].ravel(), minlength=256)[None, :]
    reference = _entropy_of_counts(centre)[0]
    # candidate (row r, col c) -> window of select_grid(image, [r, c]): columns from r, rows from c
    half = GRID_SIZE // 2
    r, c = candidates[:, 0], candidates[:, 1]
    col0 = np.where(r - half > 0, r - half, 0)
    row0 = np.where(c - half > 0, c - half, 0)
    col1 = np.minimum(col0 + GRID_SIZE, w)
    row1 = np.minimum(row0 + GRID_SIZE, h)
    offsets = np.arange(GRID_SIZE)
    diffs = np.empty(len(candidates), np.float32)
    for start in range(0, len(candidates), _CHUNK):
        part = slice(start, start + _CHUNK)
        rows = row0[part, None] + offsets  # (m, 9)
        cols = col0[part, None] + offsets
        inside = (rows[:, :, None] < row1[part, None, None]) & (
            cols[:, None, :] < col1[part, None, None]
        )
        values = grey[np.minimum(rows, h - 1)[:, :, None], np.minimum(cols, w - 1)[:, None, :]]
        m = len(rows)
        slots = (np.arange(m)[:, None, None] * 256 + values)[inside]
        counts = np.bincount(slots, minlength=m * 256).reshape(m, 256)
        empty = counts.sum(axis=1) == 0  # released: cv2 raises on an empty grid -> entropy 0
        entropies = _entropy_of_counts(counts)
        entropies[empty] = 0
        diffs[part] = np.abs(reference - entropies)
    return _pick(diffs, candidates, n)


def distance_points(
    input_point: np.ndarray, region: np.ndarray, n: int, rng: ReleasedRandom
) -> np.ndarray:
    """get_distance_points: the candidates farthest from the initial point, with the candidate's
    (row, col) set against the point's (x, y) (coordinates swapped, as released)."""
    candidates, n = _candidates(region, n, rng, twice=False)
    x0, y0 = float(input_point[0]), float(input_point[1])
    distances = np.sqrt((candidates[:, 0] - x0) ** 2 + (candidates[:, 1] - y0) ** 2)
    return _pick(distances, candidates, n)


def check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(
            f"{name} must be an integer >= 1 for the released strategies (they cannot place 0 "
            f"points of a kind), got {value!r}"
        )
    return int(value)


def check_strategy(strategy: str) -> str:
    if strategy in UNAVAILABLE:
        raise ValueError(f"strategy {strategy!r} is unavailable here: {UNAVAILABLE[strategy]}")
    if strategy not in RELEASED_STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; the released strategies are {', '.join(RELEASED_STRATEGIES)}"
        )
    return strategy


def released_points(
    strategy: str,
    image: np.ndarray,
    mask: np.ndarray,
    n_inclusion: int,
    n_exclusion: int,
    rng: ReleasedRandom,
) -> tuple[np.ndarray, np.ndarray]:
    """(inclusion, exclusion) points of one image as `main.py` selects them, drawing from `rng`
    in the released order: inclusion, then exclusion; for entropy and max_dist the two random
    initial points first. The mask must have pixels inside and outside (the released code
    crashes or returns (0, 0) points otherwise)."""
    check_strategy(strategy)
    n_inc, n_exc = (
        check_count(n_inclusion, "the inclusion count"),
        check_count(n_exclusion, "the exclusion count"),
    )
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the image {image.shape[:2]}")
    current = (mask != 0).astype(np.uint8)
    if not current.any():
        raise ValueError("the mask is empty: no place for inclusion points")
    if current.all():
        raise ValueError("the mask covers the whole image: no place for exclusion points")
    if strategy == "rand":
        return random_points(current, n_inc, "inc", rng), random_points(current, n_exc, "ex", rng)
    if strategy == "shi-tomasi":
        return (
            corner_points(image, current, n_inc, "inc", rng),
            corner_points(image, current, n_exc, "ex", rng),
        )
    if strategy == "kmediod":
        return kmedoid_points(current, n_inc, "inc", rng), kmedoid_points(current, n_exc, "ex", rng)
    inc_init = random_points(current, 1, "inc", rng)
    ex_init = random_points(current, 1, "ex", rng)
    outside = (1 - current).astype(np.uint8)
    if strategy == "entropy":
        inc = entropy_points(inc_init[0], current, image, n_inc, rng)
        ex = entropy_points(ex_init[0], outside, image, n_exc, rng)
    else:  # max_dist
        inc = distance_points(inc_init[0], current, n_inc, rng)
        ex = distance_points(ex_init[0], outside, n_exc, rng)
    return np.concatenate([inc_init, inc]), np.concatenate([ex_init, ex])


def released_iou(predicted: np.ndarray, ground_truth: np.ndarray) -> float:
    """main.py's score: |A & B| / |A | B|, and 0 when they do not intersect."""
    a, b = np.asarray(predicted) != 0, np.asarray(ground_truth) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shape {a.shape} differs from the ground truth's {b.shape}")
    inter = int(np.count_nonzero(a & b))
    return 0.0 if inter == 0 else inter / int(np.count_nonzero(a | b))


def released_mask(masks: np.ndarray) -> np.ndarray:
    """The mask the released benchmark scores: masks[0] of a multimask_output=True prediction."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or not len(masks):
        raise ValueError(
            f"expected the (3, H, W) masks of a multimask prediction, got {masks.shape}"
        )
    return masks[0]


def run_released(
    strategy: str,
    images,
    masks,
    counts,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One released run: seed once, then every image in order. `counts` is one (inclusion,
    exclusion) pair for all images or a sequence of pairs, one per image."""
    rng = ReleasedRandom(seed)
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    pairs = [counts] * len(images) if len(counts) == 2 and np.ndim(counts[0]) == 0 else list(counts)
    if len(pairs) != len(images):
        raise ValueError(f"{len(pairs)} count pairs for {len(images)} images")
    return [
        released_points(strategy, image, mask, inc, exc, rng)
        for image, mask, (inc, exc) in zip(images, masks, pairs, strict=True)
    ]
