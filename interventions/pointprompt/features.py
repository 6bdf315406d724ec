"""PointPrompt's feature table (`stats.csv`) as released, computed vectorised.

The released script (olivesgatech/PointPrompt `feature_extraction/gather_statistics.py` with its
`utils.py`) walks an export in the PointPrompt layout: per data set, per participant folder, per
image index i (one per `eachround/<i>_.npy` file), per timestep j in 0..T-1, one row. This module
computes every column of that table, with the released names and order, from the same arrays
(`Attempt`: rounds, sorts, scores, green and red points of one folder x image; `prepare_image`:
the image and its ground truth), reproducing the released definitions and their quirks
(docs/pointprompt.md "Features as released" names each one):

- `Best timestamp`, `First/Last ...`: two-round arithmetic (`sort[0] - #round-0 timesteps`, the
  last of round 0 when the best is not in the last round; a negative index counts from the end).
- `Prompt coverage`: |fill(hull(G)) & M| / |M|, 0 with fewer than 3 green points or when the
  released collinearity test (cross products with the first point, consecutive pairs only) says
  collinear.
- `Max spread` = max pairwise |G| / mask diameter; `Avg min distance` = sqrt(mean of squared
  nearest-neighbour distances) / diameter (0 for one point); the diameter is the largest
  distance between two ground-truth pixels.
- `Inc/Exc distance`: chamfer distance with every squared distance truncated to an integer
  before the square root, / image diagonal. `Max spread exc` = max pairwise |R| / diagonal.
- `Inc efficiency` = coverage / number of green points.
- `Exc encasing`, `Inc encasing`: mean over the points of the minimum over ALL contours
  (RETR_TREE, holes too) of the signed distance (OpenCV pointPolygonTest), negated for red;
  clamped at 0; / diagonal (red) or / diameter (green). As released they are written into the
  image's dict (`i_dict`, a name that refers to the loop's variable, not the function's own
  `ind_dict`), so row j carries timestep j-1's values, row 0 of each image none, and the two
  columns come last. `variant="corrected"` gives each row its own timestep's values.
- Data-level columns: OpenCV BGR->grey on the stored (RGB) image, Canny(100, 200) edges inside the
  mask / mask area, 4-connected components, GLCM (scikit-image `graycomatrix`/`graycoprops`,
  levels 257 with the outside set to 256 and cut off, angles 0 and pi/2, each property summed
  over the two angles) of the object (distance 1% of the diameter) and of the background
  (1% of the diagonal when it is >= 100 px, else 1); all empty below 0.05% of the image.
- `Obj Density`: the released object_counts.csv for PointPrompt's data sets (found by the
  released regex search, then exact name, then position i), else a per-image count if given,
  else 1. `Merged` / `Split` / `Compact` compare it with `CC Density`.

Where the released code cannot compute a cell (it raises on an empty point set: `Max spread`,
`Inc/Exc distance`, `Max spread exc`, `Inc efficiency`; `Avg min distance` of no point is NaN)
the cell is left empty and the rest of the row is computed; `strict=True` raises instead, as the
released script would. A ground truth that is empty, not 0/1 or one line of pixels is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from interventions.pointprompt.object_counts import COUNTS as RELEASED_OBJECT_COUNTS

RELEASED_DATASETS = (
    "Dolphin above", "Dolphin below", "Salt dome", "Chalk group", "Baseball bat", "Bird", "Bus",
    "Cat", "Clock", "Cow", "Dog", "Tie", "Stop sign", "Polyp", "Skin", "Breast",
)  # fmt: skip
GENERAL_COLUMNS = (
    "Dataset", "Student", "Image ID", "Number of rounds", "Best round", "Best round length",
    "Best timestamp", "First # points", "First # green points", "First # red points", "First score",
    "Best # points", "Best # green points", "Best # red points", "Best score", "Last # points",
    "Last # green points", "Last # red points", "Last score", "Best-first gap",
)  # fmt: skip
DATA_COLUMNS = (
    "Mask size", "CC Density", "Texture score", "Contrast", "Dissimilarity", "Homogeneity", "Energy",
    "Correlation", "ASM", "BK Contrast", "BK Dissimilarity", "BK Homogeneity", "BK Energy",
    "BK Correlation", "BK ASM",
)  # fmt: skip
OBJECT_COLUMNS = ("Obj Density", "Merged", "Split", "Compact")
CURRENT_COLUMNS = (
    "Current timestamp", "Current round", "Current # points", "Current # green points",
    "Current # red points", "Current score", "Current is best",
)  # fmt: skip
PROMPT_COLUMNS = (
    "Prompt coverage", "Max spread", "Avg min distance", "Inc/Exc distance", "Max spread exc",
    "Inc efficiency",
)  # fmt: skip
ENCASING_COLUMNS = ("Exc encasing", "Inc encasing")
COLUMNS = (
    GENERAL_COLUMNS + DATA_COLUMNS + OBJECT_COLUMNS + CURRENT_COLUMNS + PROMPT_COLUMNS
    + ENCASING_COLUMNS
)  # fmt: skip
VARIANTS = ("released", "corrected")
DEFINITIONS = {
    "released": (
        "olivesgatech/PointPrompt feature_extraction/gather_statistics.py + utils.py as released "
        "(commit fa78c79), quirks reproduced; Exc/Inc encasing of row j are timestep j-1's"
    ),
    "corrected": "as released, except that Exc/Inc encasing of row j are timestep j's own",
}
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
SMALL_SHARE = 0.0005  # regions under this share of the image get no GLCM / prompt features


# ----------------------------------------------------------------------------- inputs


@dataclass
class Attempt:
    """One participant folder x image, as the export's files hold it (T timesteps)."""

    rounds: np.ndarray  # int (T,), 0-based rounds (eachround/<i>_.npy)
    sort: np.ndarray  # int (T,), timesteps from best to worst score (sorts/<i>_sort.npy)
    scores: np.ndarray  # float (T,) (scores/<i>score.npy)
    green: Sequence[np.ndarray]  # T arrays (n_t x 2) of (x, y) (points/<i>_green.npy)
    red: Sequence[np.ndarray]


@dataclass
class Folder:
    """A participant folder: its name (e.g. `st1`) and one Attempt per image index."""

    name: str
    attempts: Sequence[Attempt]


@dataclass
class ImageContext:
    """What every row of one image shares: its data-level columns and the mask geometry."""

    index: int
    shape: tuple[int, int]
    area: int
    small: bool
    diameter: float | None
    data: tuple
    # the contours' edges for the signed distances: start, end (float32 m x 2), first edge of each
    edge_from: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), np.float32))
    edge_to: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), np.float32))
    contour_starts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))
    label: np.ndarray | None = field(repr=False, default=None)
    point_cache: dict = field(repr=False, default_factory=dict)

    @property
    def diagonal(self) -> float:
        return float(np.sqrt(self.shape[0] ** 2 + self.shape[1] ** 2))


@dataclass
class StatsTable:
    columns: list[str]
    rows: list[list]
    variant: str = "released"

    def column(self, name: str) -> list:
        k = self.columns.index(name)
        return [row[k] for row in self.rows]


# ----------------------------------------------------------------------------- per image


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        # as released: OpenCV's BGR order, applied to the stored RGB image
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
    return image


def mask_diameter(label: np.ndarray, where: str = "the ground truth") -> float:
    """Largest distance between two pixels of `label` == 1 (the released get_mask_diameter: the
    convex hull's vertices, pairwise). Only the leftmost and rightmost pixel of each row can be
    a hull vertex, so the hull is taken of those."""
    rows, cols = np.nonzero(label == 1)
    if len(rows) == 0:
        raise ValueError(f"{where} is empty")
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)] - 1
    candidates = np.unique(
        np.concatenate(
            [np.stack([rows[starts], cols[starts]], 1), np.stack([rows[ends], cols[ends]], 1)]
        ),
        axis=0,
    )
    try:
        vertices = candidates[ConvexHull(candidates).vertices]
    except (QhullError, ValueError) as exc:
        raise ValueError(
            f"{where}: its pixels all lie on one line (or are fewer than 3), so its convex hull "
            "is degenerate; the released feature script fails on it"
        ) from exc
    diff = vertices[:, None, :] - vertices[None, :, :]
    return float(np.sqrt((diff**2).sum(axis=2).max()))


def _glcm(grey: np.ndarray, region: np.ndarray, distance: int) -> tuple:
    from skimage.feature import graycomatrix

    masked = (grey * region).astype(np.uint16)
    masked[region == 0] = 256
    rows = np.flatnonzero((masked != 0).any(axis=1))
    cols = np.flatnonzero((masked != 0).any(axis=0))
    if not len(rows):
        raise ValueError("the GLCM region and the image are all zero")
    crop = masked[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    g = graycomatrix(crop, [distance], [0, np.pi / 2], levels=257)[:256, :256, :, :]
    return glcm_props(g)


def glcm_props(g: np.ndarray) -> tuple:
    """scikit-image graycoprops' contrast, dissimilarity, homogeneity, energy, correlation and
    ASM of each (distance, angle) matrix of `g` (normalised as graycoprops does; an all-zero
    matrix gives 0, 0, 0, 0, 1, 0), each summed over the matrices: graycoprops' formulas, on
    the non-zero cells only (a GLCM of an image is sparse)."""
    totals = np.zeros(6)
    for k in range(g.shape[2]):
        for a in range(g.shape[3]):
            i, j = np.nonzero(g[:, :, k, a])
            counts = g[i, j, k, a].astype(np.float64)
            total = counts.sum()
            p = counts / (total if total else 1.0)
            diff = (i - j).astype(np.float64)
            asm = np.sum(p**2)
            mean_i, mean_j = np.sum(i * p), np.sum(j * p)
            std_i = np.sqrt(np.sum(p * (i - mean_i) ** 2))
            std_j = np.sqrt(np.sum(p * (j - mean_j) ** 2))
            if std_i < 1e-15 or std_j < 1e-15:
                corr = 1.0
            else:
                corr = np.sum(p * (i - mean_i) * (j - mean_j)) / (std_i * std_j)
            totals += (
                np.sum(p * diff**2),
                np.sum(p * np.abs(diff)),
                np.sum(p / (1.0 + diff**2)),
                np.sqrt(asm),
                corr,
                asm,
            )
    return tuple(float(v) for v in totals)


def prepare_image(image: np.ndarray, label: np.ndarray, index: int) -> ImageContext:
    """The data-level columns of one image and the geometry its prompt features need."""
    label = np.asarray(label)
    where = f"image {index}'s ground truth"
    if label.ndim != 2:
        raise ValueError(f"{where} must be 2-D, got shape {label.shape}")
    if label.dtype == bool:
        label = label.astype(np.uint8)
    values = np.unique(label)
    if not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"{where} must hold 0 and 1 only, found {values[:5].tolist()}")
    label = label.astype(np.uint8, copy=False)
    image = np.asarray(image)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {index} is {image.shape[:2]} but its ground truth {label.shape}")
    h, w = label.shape
    area = int(label.sum())
    if area == 0:
        raise ValueError(f"{where} is empty (no object pixel)")
    grey = _grey(image)
    size = area / (h * w)
    cc = int(ndimage.label(label.astype(bool))[1])
    edges = cv2.Canny(grey * label, 100, 200)
    texture = int(np.count_nonzero(edges[label == 1])) / area
    small = area < h * w * SMALL_SHARE
    diameter = None if small else mask_diameter(label, where)
    if small:
        obj = (None,) * 6
    else:
        d = int(diameter * 0.01) if int(diameter * 0.01) > 0 else 1
        obj = _glcm(grey, label, d)
    background = 1 - label
    if np.sum(background) < h * w * SMALL_SHARE:
        bck = (None,) * 6
    else:
        diag = np.sqrt(h**2 + w**2)
        bck = _glcm(grey, background, int(diag * 0.01) if diag >= 100 else 1)
    ctx = ImageContext(
        index=index,
        shape=(h, w),
        area=area,
        small=small,
        diameter=diameter,
        data=(size, cc, texture, *obj, *bck),
        label=label,
    )
    if not small:
        contours, _ = cv2.findContours(label, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        starts, froms, tos, at = [], [], [], 0
        for contour in contours:
            c = contour.reshape(-1, 2).astype(np.float32)
            starts.append(at)
            froms.append(np.roll(c, 1, axis=0))  # edge i runs from point i-1 to point i
            tos.append(c)
            at += len(c)
        ctx.edge_from = np.concatenate(froms)
        ctx.edge_to = np.concatenate(tos)
        ctx.contour_starts = np.asarray(starts, dtype=np.intp)
    return ctx


# ----------------------------------------------------------------------------- per timestep


def _pad(point_sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, n_max, 2) float64 (unused slots 0), valid (T, n_max), counts (T,)."""
    sets = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in point_sets]
    counts = np.asarray([len(p) for p in sets], dtype=np.intp)
    n = max(1, int(counts.max(initial=0)))
    out = np.zeros((len(sets), n, 2))
    valid = np.arange(n)[None, :] < counts[:, None]
    if len(sets):
        flat = np.concatenate(sets) if counts.sum() else np.zeros((0, 2))
        out[valid] = flat
    return out, valid, counts


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(axis=3)


def _signed_distances(ctx: ImageContext, points: np.ndarray) -> np.ndarray:
    """(k, contours): OpenCV pointPolygonTest(contour, point, measureDist=True) of every point
    (as OpenCV sees it: float32) against every contour: + inside, - outside, 0 on the edge."""
    q = points.astype(np.float32)
    px, py = q[:, 0:1], q[:, 1:2]
    v0x, v0y = ctx.edge_from[:, 0], ctx.edge_from[:, 1]
    vx, vy = ctx.edge_to[:, 0], ctx.edge_to[:, 1]
    # OpenCV subtracts in float (Point2f), then multiplies in double
    dx, dy = (vx - v0x).astype(np.float64), (vy - v0y).astype(np.float64)
    dx1, dy1 = (px - v0x).astype(np.float64), (py - v0y).astype(np.float64)
    dx2, dy2 = (px - vx).astype(np.float64), (py - vy).astype(np.float64)
    px, py = px.astype(np.float64), py.astype(np.float64)
    v0x, v0y, vx, vy = (a.astype(np.float64) for a in (v0x, v0y, vx, vy))
    before = dx1 * dx + dy1 * dy <= 0
    after = ~before & (dx2 * dx + dy2 * dy >= 0)
    cross = dy1 * dx - dx1 * dy
    length2 = dx * dx + dy * dy
    between = ~(before | after)
    num = np.where(before, dx1 * dx1 + dy1 * dy1, np.where(after, dx2 * dx2 + dy2 * dy2, cross**2))
    ratio = num / np.where(between, length2, 1.0)
    nearest = np.minimum.reduceat(ratio, ctx.contour_starts, axis=1)
    skip = ((v0y <= py) & (vy <= py)) | ((v0y > py) & (vy > py)) | ((v0x < px) & (vx < px))
    crossing = ~skip & (np.where(dy < 0, -cross, cross) > 0)
    odd = np.add.reduceat(crossing.astype(np.intp), ctx.contour_starts, axis=1) % 2 == 1
    dist = np.sqrt(nearest)
    return np.where(odd | (dist == 0), dist, -dist)


def _fill_point_cache(ctx: ImageContext, sets: Iterable[np.ndarray]) -> None:
    """Per point of the image (kept across attempts): the minimum over contours of the signed
    distance, and of its negation."""
    new = {p for pts in sets for p in map(tuple, pts.tolist())} - ctx.point_cache.keys()
    if new:
        points = np.asarray(sorted(new), dtype=np.float64)
        d = _signed_distances(ctx, points)
        lows, highs = d.min(axis=1).tolist(), (-d).min(axis=1).tolist()
        keys = map(tuple, points.tolist())
        ctx.point_cache.update(zip(keys, zip(lows, highs, strict=True), strict=False))


def _encasing(ctx: ImageContext, sets: Sequence[np.ndarray], which: int) -> list[float]:
    """The released points_to_mask_dist per timestep: mean over its points of the minimum over
    contours of the signed distance (which=0, green) or its negation (which=1, red); 0 when that
    is not > 0 (and for no point)."""
    out = []
    for pts in sets:
        if not len(pts):
            out.append(0.0)
            continue
        values = [ctx.point_cache[p][which] for p in map(tuple, pts.tolist())]
        avg = sum(values) / len(values)
        out.append(avg if avg > 0 else 0.0)
    return out


def _collinear(points: np.ndarray) -> bool:
    """The released test: every cross product (p_i - p_0) x (p_{i+1} - p_0), i = 1..n-2, is 0."""
    p = points.tolist()
    x1, y1 = p[0]
    for (x2, y2), (x3, y3) in zip(p[1:-1], p[2:], strict=False):
        if (y2 - y1) * (x3 - x1) - (y3 - y1) * (x2 - x1) != 0:
            return False
    return True


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices, counter-clockwise, without points on an edge (as qhull gives them):
    Andrew's monotone chain, in plain Python (the point sets are small)."""
    pts = sorted(set(map(tuple, points.tolist())))

    def chain(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(pts), chain(reversed(pts))
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def _coverage(ctx: ImageContext, green: np.ndarray) -> int | float:
    if len(green) < 3 or _collinear(green):
        return 0
    hull = _hull(green).astype(np.int64)
    h, w = ctx.shape
    lo, hi = hull.min(axis=0), hull.max(axis=0)
    if lo.min() >= 0 and hi[0] < w and hi[1] < h:  # fill only the hull's box: same pixels
        canvas = np.zeros((hi[1] - lo[1] + 1, hi[0] - lo[0] + 1), dtype=np.uint8)
        cv2.fillPoly(canvas, [hull - lo], 1)
        inside = ctx.label[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
    else:
        canvas = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(canvas, [hull], 1)
        inside = ctx.label
    return int(np.count_nonzero(canvas & inside)) / ctx.area


def prompt_stats(
    ctx: ImageContext, green: Sequence, red: Sequence, strict: bool = False, where: str = ""
) -> dict[str, list]:
    """The 8 prompt-level columns of T timesteps of one image (each row its own timestep)."""
    t_count = len(green)
    names = PROMPT_COLUMNS + ENCASING_COLUMNS
    if ctx.small:
        return {name: [None] * t_count for name in names}
    g, gv, ng = _pad(green)
    r, rv, nr = _pad(red)
    if strict:
        empty = np.flatnonzero((ng == 0) | (nr == 0))
        if len(empty):
            raise ValueError(
                f"{where} timestep {int(empty[0])}: no green or no red point; the released "
                "feature script fails on an empty point set"
            )
    diameter, diag = ctx.diameter, ctx.diagonal
    gg = _sq(g, g)
    pair = gv[:, :, None] & gv[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        max_g = np.sqrt(np.where(pair, gg, -np.inf).max(axis=(1, 2), initial=-np.inf))
        nn = np.where(pair & ~np.eye(gg.shape[1], dtype=bool)[None], gg, np.inf).min(axis=2)
        nn = np.where(ng[:, None] == 1, 0.0, nn)
        avg_min = np.sqrt(np.where(gv, nn, 0.0).sum(axis=1) / ng)
        gr = np.sqrt(np.floor(_sq(g, r)))  # squared distances truncated to integers
        both = gv[:, :, None] & rv[:, None, :]
        to_red = np.where(both, gr, np.inf).min(axis=2)
        to_green = np.where(both, gr, np.inf).min(axis=1)
        chamfer = (
            np.where(gv, to_red, 0).sum(axis=1) / ng + np.where(rv, to_green, 0).sum(axis=1) / nr
        ) / 2
        rr = _sq(r, r)
        max_r = np.sqrt(
            np.where(rv[:, :, None] & rv[:, None, :], rr, -np.inf).max(axis=(1, 2), initial=-np.inf)
        )
    coverage: list = []
    seen: dict[bytes, int | float] = {}
    for t in range(t_count):
        pts = g[t, : ng[t]]
        key = pts.tobytes()
        if key not in seen:
            seen[key] = _coverage(ctx, pts)
        coverage.append(seen[key])
    green_sets = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in green]
    red_sets = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in red]
    _fill_point_cache(ctx, green_sets + red_sets)
    exc = _encasing(ctx, red_sets, 1)
    inc = _encasing(ctx, green_sets, 0)

    with np.errstate(invalid="ignore", divide="ignore"):
        columns = {
            "Max spread": (max_g / diameter).tolist(),
            "Avg min distance": (avg_min / diameter).tolist(),
            "Inc/Exc distance": (chamfer / diag).tolist(),
            "Max spread exc": (max_r / diag).tolist(),
        }
    has_g, has_r = (ng > 0).tolist(), (nr > 0).tolist()
    n_green = ng.tolist()
    out: dict[str, list] = {
        "Prompt coverage": coverage,
        "Max spread": [
            v if ok else None for v, ok in zip(columns["Max spread"], has_g, strict=True)
        ],
        "Avg min distance": [
            v if ok else None for v, ok in zip(columns["Avg min distance"], has_g, strict=True)
        ],
        "Inc/Exc distance": [
            v if a and b else None
            for v, a, b in zip(columns["Inc/Exc distance"], has_g, has_r, strict=True)
        ],
        "Max spread exc": [
            v if ok else None for v, ok in zip(columns["Max spread exc"], has_r, strict=True)
        ],
        "Inc efficiency": [c / n if n else None for c, n in zip(coverage, n_green, strict=True)],
        "Exc encasing": [v / diag for v in exc],
        "Inc encasing": [v / diameter for v in inc],
    }
    return out


# ----------------------------------------------------------------------------- the table


def released_object_counts(dataset: str) -> list[int] | None:
    """The released lookup: a regex search of the data set's name in object_counts.csv's names;
    if found, the rows whose name equals it. None when the search finds nothing."""
    try:
        found = any(re.search(dataset, name) for name in RELEASED_OBJECT_COUNTS)
    except re.error as exc:
        raise ValueError(
            f"data set name {dataset!r} is not a valid regular expression, which the released "
            "object-count lookup needs"
        ) from exc
    if not found:
        return None
    if dataset not in RELEASED_OBJECT_COUNTS:
        raise ValueError(
            f"data set name {dataset!r} is part of a PointPrompt data set's name but not equal to "
            "one; the released object-count lookup fails on it (rename the data set)"
        )
    return RELEASED_OBJECT_COUNTS[dataset]


def _attempt_rows(
    head: list,
    attempt: Attempt,
    ctx: ImageContext,
    variant: str,
    strict: bool,
    where: str,
    prompt: dict | None = None,
) -> tuple[list[list], bool]:
    rounds = np.asarray(attempt.rounds).astype(np.int64).reshape(-1)
    sort = np.asarray(attempt.sort).astype(np.int64).reshape(-1)
    scores = np.asarray(attempt.scores, dtype=np.float64).reshape(-1)
    green, red = list(attempt.green), list(attempt.red)
    t_count = len(sort)
    if not (len(rounds) == len(scores) == len(green) == len(red) == t_count):
        raise ValueError(
            f"{where}: rounds, sort, scores, green and red differ in length "
            f"({len(rounds)}, {t_count}, {len(scores)}, {len(green)}, {len(red)})"
        )
    n_green = [len(np.asarray(p).reshape(-1, 2)) for p in green]
    n_red = [len(np.asarray(p).reshape(-1, 2)) for p in red]

    def general(t: int) -> list:
        if not -t_count <= t < t_count:
            raise ValueError(f"{where}: the released arithmetic asks for timestep {t}")
        return [n_green[t] + n_red[t], n_green[t], n_red[t], float(scores[t])]

    best = int(sort[0])
    best_round = int(rounds[best])
    n_round0 = int(np.sum(rounds == 0))
    first_t = 0 if best_round == 0 else n_round0
    last_t = len(rounds) - 1 if best_round == int(rounds[-1]) else n_round0 - 1
    first, best_g, last = general(first_t), general(best), general(last_t)
    image_part = [
        len(np.unique(rounds)),
        best_round,
        int(np.sum(rounds == best_round)),
        best if best_round == 0 else best - n_round0,
        *first,
        *best_g,
        *last,
        best_g[3] - first[3],
    ]
    if prompt is None:
        prompt = prompt_stats(ctx, green, red, strict, where)
    rows = []
    for j in range(t_count):
        row = head + image_part
        row += [j, int(rounds[j]), *general(j), int(j == best)]
        row += [prompt[name][j] for name in PROMPT_COLUMNS]
        if variant == "released":
            row += [prompt[name][j - 1] for name in ENCASING_COLUMNS] if j else [None, None]
        else:
            row += [prompt[name][j] for name in ENCASING_COLUMNS]
        rows.append(row)
    return rows, t_count > 1


def _prompt_stats_by_image(
    contexts: Sequence[ImageContext], folders: list[Folder], strict: bool
) -> dict[tuple[int, int], dict]:
    """prompt_stats of every attempt, computed one image at a time over all its attempts
    (fewer, larger array operations); keyed by (folder position, image index)."""
    by_image: dict[int, list[tuple[int, Attempt]]] = {}
    for f, folder in enumerate(folders):
        for i, attempt in enumerate(folder.attempts):
            if not len(attempt.sort):
                continue
            if i >= len(contexts):
                raise ValueError(
                    f"{folder.name} image {i}: the data set has only {len(contexts)} images"
                )
            if len(attempt.green) != len(attempt.sort) or len(attempt.red) != len(attempt.sort):
                continue  # _attempt_rows reports the mismatch
            if strict:
                prompt_stats(
                    contexts[i], attempt.green, attempt.red, True, f"{folder.name} image {i}"
                )
            by_image.setdefault(i, []).append((f, attempt))
    out: dict[tuple[int, int], dict] = {}
    for i, items in by_image.items():
        green = [p for _, a in items for p in a.green]
        red = [p for _, a in items for p in a.red]
        stats = prompt_stats(contexts[i], green, red)
        at = 0
        for f, attempt in items:
            t = len(attempt.sort)
            out[(f, i)] = {name: values[at : at + t] for name, values in stats.items()}
            at += t
    return out


def released_stats(
    dataset: str,
    contexts: Sequence[ImageContext],
    folders: Iterable[Folder],
    object_counts: Mapping[int, int] | Sequence[int] | None = None,
    prompts_path: str = "Prompting results",
    variant: str = "released",
    strict: bool = False,
) -> StatsTable:
    """The released stats.csv of one data set: `contexts[i]` from `prepare_image` for every
    image of the data set, `folders` in the order to walk them. `object_counts` (per image
    index) is used when the data set is not one of PointPrompt's."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    released = released_object_counts(dataset)
    folders = list(folders)
    batched = _prompt_stats_by_image(contexts, folders, strict)
    rows: list[list] = []
    any_second = False
    for f, folder in enumerate(folders):
        student = f"{prompts_path}/{dataset}/{folder.name}"
        for i, attempt in enumerate(folder.attempts):
            if not len(attempt.sort):
                continue
            where = f"{folder.name} image {i}"
            ctx = contexts[i]
            if released is not None:
                if i >= len(released):
                    raise ValueError(
                        f"{where}: the released object counts of {dataset!r} stop at "
                        f"{len(released)} images"
                    )
                objects = released[i]
            elif object_counts is not None:
                objects = int(object_counts[i])
            else:
                objects = 1
            cc = ctx.data[1]
            head = [dataset, student, i]
            tail_obj = [objects, int(objects > cc), int(objects < cc), int(objects == cc)]
            attempt_rows, second = _attempt_rows(
                head, attempt, ctx, variant, strict, where, batched.get((f, i))
            )
            any_second |= second
            for row in attempt_rows:
                # splice the data-level and object columns in after the general ones
                k = len(GENERAL_COLUMNS)
                rows.append(row[:k] + list(ctx.data) + tail_obj + row[k:])
    columns = list(COLUMNS)
    if variant == "released" and not any_second:
        # the released table gets the two columns from a row j >= 1 only
        columns = columns[: -len(ENCASING_COLUMNS)]
        rows = [row[: len(columns)] for row in rows]
    return StatsTable(columns, rows, variant)


# ----------------------------------------------------------------------------- csv


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def format_rows(table: StatsTable) -> Iterable[list[str]]:
    """Cells as pandas' to_csv writes the released DataFrame: a column with only integers as
    integers, any other number column as floats (repr), empty for a missing value."""
    kinds = []
    for k in range(len(table.columns)):
        values = [row[k] for row in table.rows]
        if all(isinstance(v, str) for v in values):
            kinds.append("str")
        elif all(_is_int(v) for v in values):
            kinds.append("int")
        else:
            kinds.append("float")
    for row in table.rows:
        cells = []
        for value, kind in zip(row, kinds, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            elif kind == "str":
                cells.append(str(value))
            elif kind == "int":
                cells.append(str(int(value)))
            else:
                cells.append(repr(float(value)))
        yield cells


def write_stats_csv(table: StatsTable, handle) -> int:
    """Write the table as CSV text to `handle`; return the number of rows."""
    import csv

    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(table.columns)
    n = 0
    for cells in format_rows(table):
        writer.writerow(cells)
        n += 1
    return n


# ----------------------------------------------------------------------------- an export on disk


_NPY_HEADER = re.compile(
    r"'descr':\s*'([^']+)',\s*'fortran_order':\s*(True|False),\s*'shape':\s*\(([^)]*)\)"
)


def load_npy(path, allow_pickle: bool = True) -> np.ndarray:
    """np.load for the small .npy files of a trusted export on disk, without np.load's header
    evaluation (most of its time on files this small); anything unusual goes to np.load."""
    import pickle

    data = Path(path).read_bytes()
    if data[:6] == b"\x93NUMPY" and data[6] in (1, 2):
        size, start = (2, 8) if data[6] == 1 else (4, 8)
        length = int.from_bytes(data[start : start + size], "little")
        begin = start + size
        match = _NPY_HEADER.search(data[begin : begin + length].decode("latin1"))
        if match:
            descr, fortran, dims = match.groups()
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
            body = data[begin + length :]
            if descr == "|O":
                if not allow_pickle:
                    raise ValueError(f"{path}: an object array needs allow_pickle")
                return pickle.loads(body)
            dtype = np.dtype(descr)
            count = math.prod(shape)
            if len(body) == count * dtype.itemsize:
                order = "F" if fortran == "True" else "C"
                return np.frombuffer(body, dtype=dtype, count=count).reshape(shape, order=order)
    return np.load(path, allow_pickle=allow_pickle)


def read_folder(path, name: str) -> Folder:
    """A participant folder of an export in the PointPrompt layout (points, scores, sorts,
    eachround), one Attempt per eachround file, as the released script finds them."""
    base = Path(path)
    n = sum(1 for f in (base / "eachround").iterdir() if f.is_file())
    attempts = []
    for i in range(n):
        attempts.append(
            Attempt(
                rounds=load_npy(base / "eachround" / f"{i}_.npy", allow_pickle=False),
                sort=load_npy(base / "sorts" / f"{i}_sort.npy", allow_pickle=False),
                scores=load_npy(base / "scores" / f"{i}score.npy"),
                green=list(load_npy(base / "points" / f"{i}_green.npy")),
                red=list(load_npy(base / "points" / f"{i}_red.npy")),
            )
        )
    return Folder(name, attempts)


def stats_from_export(
    root,
    dataset: str,
    folder_names: Sequence[str] | None = None,
    object_counts=None,
    variant: str = "released",
) -> StatsTable:
    """stats.csv of an unpacked export (`root` holds `Image datasets/` and `Prompting results/`).
    Folders in `folder_names` order, else sorted by name."""
    root = Path(root)
    images = np.load(root / "Image datasets" / dataset / "samples.npy", allow_pickle=True)
    labels = np.load(root / "Image datasets" / dataset / "labels.npy", allow_pickle=True)
    contexts = [prepare_image(images[i], labels[i], i) for i in range(len(labels))]
    results = root / "Prompting results" / dataset
    if folder_names is None:
        folder_names = sorted(f.name for f in results.iterdir() if f.is_dir())
    folders = (read_folder(results / name, name) for name in folder_names)
    return released_stats(dataset, contexts, folders, object_counts, variant=variant)
