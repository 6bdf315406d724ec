"""A plain, loop-by-loop implementation of the released PointPrompt feature definitions
(`feature_extraction/gather_statistics.py` + `utils.py`), written here separately from
`interventions.pointprompt.features` to check it, and run by bench/pointprompt_features.py as
"the released way": it walks an export on disk, loads the .npy files again for every
timestep, takes the convex hull of every mask pixel per timestep, loops over points in Python.

The released script's module-level `i_dict` is reproduced: each timestep's Exc/Inc encasing are
written into the image's dict, which the next row copies.

Also: `write_export` (an export in the PointPrompt layout, like our exporter writes) and
`generated_export` (random images, masks and prompting sessions for it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

# ----------------------------------------------------------------------------- the definitions


def ref_diameter(mask):
    pixels = np.column_stack(np.where(mask == 1))
    hull = ConvexHull(pixels)
    corners = pixels[hull.vertices]
    best = 0
    for a in corners:  # one row of squared distances at a time
        best = max(best, int(np.max(np.sum((a - corners) ** 2, axis=1))))
    return math.sqrt(best)


def ref_max_dist(points):
    best = None
    for a in points:
        for b in points:
            d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
            best = d if best is None else max(best, d)
    if best is None:
        raise ValueError("no point")
    return math.sqrt(best)


def ref_avg_min(points):
    if len(points) == 0:
        return math.nan
    total = 0.0
    for i, a in enumerate(points):
        ds = sorted(float((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) for b in points)
        total += ds[1] if len(ds) > 1 else 0.0
        del i
    return math.sqrt(total / len(points))


def ref_chamfer(p1, p2):
    if len(p1) == 0 or len(p2) == 0:
        raise ValueError("no point")

    def side(a_set, b_set):
        mins = []
        for a in a_set:
            mins.append(min(math.sqrt(int((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)) for b in b_set))
        return sum(mins) / len(mins)

    return (side(p1, p2) + side(p2, p1)) / 2


def ref_collinear(points):
    x1, y1 = points[0]
    for k in range(1, len(points) - 1):
        x2, y2 = points[k]
        x3, y3 = points[k + 1]
        if (y2 - y1) * (x3 - x1) - (y3 - y1) * (x2 - x1) != 0:
            return False
    return True


def ref_coverage(green, mask):
    if len(green) < 3 or ref_collinear(green):
        return 0
    canvas = np.zeros(mask.shape, dtype=np.uint8)
    hull = ConvexHull(green)
    cv2.fillPoly(canvas, [np.asarray(green)[hull.vertices].astype("int64")], 1)
    return int(np.sum(canvas & mask)) / int(mask.sum())


def ref_encasing(points, mask, sign):
    contours, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    per_point = []
    for p in points:
        per_point.append(
            min(sign * cv2.pointPolygonTest(c, (float(p[0]), float(p[1])), True) for c in contours)
        )
    if not per_point:
        return 0
    avg = float(np.mean(per_point))
    return avg if avg > 0 else 0


def ref_glcm_loops(grey, region, d):
    """Co-occurrences counted pixel by pixel (horizontal and vertical neighbours at distance d,
    pairs involving the outside level 256 dropped), then the six properties, summed."""
    masked = grey.astype(np.int64) * region
    masked[region == 0] = 256
    nz = np.argwhere(masked != 0)
    r0, c0 = nz.min(axis=0)
    r1, c1 = nz.max(axis=0)
    crop = masked[r0 : r1 + 1, c0 : c1 + 1]
    h, w = crop.shape
    totals = [0.0] * 6
    for dr, dc in ((0, d), (d, 0)):
        counts: dict[tuple[int, int], int] = {}
        for r in range(h - dr):
            for c in range(w - dc):
                i, j = int(crop[r, c]), int(crop[r + dr, c + dc])
                if i < 256 and j < 256:
                    counts[(i, j)] = counts.get((i, j), 0) + 1
        n = sum(counts.values()) or 1
        probs = {k: v / n for k, v in counts.items()}
        contrast = sum(p * (i - j) ** 2 for (i, j), p in probs.items())
        dissim = sum(p * abs(i - j) for (i, j), p in probs.items())
        homog = sum(p / (1 + (i - j) ** 2) for (i, j), p in probs.items())
        asm = sum(p * p for p in probs.values())
        mu_i = sum(p * i for (i, _), p in probs.items())
        mu_j = sum(p * j for (_, j), p in probs.items())
        sd_i = math.sqrt(sum(p * (i - mu_i) ** 2 for (i, _), p in probs.items()))
        sd_j = math.sqrt(sum(p * (j - mu_j) ** 2 for (_, j), p in probs.items()))
        if sd_i < 1e-15 or sd_j < 1e-15:
            corr = 1.0
        else:
            cov = sum(p * (i - mu_i) * (j - mu_j) for (i, j), p in probs.items())
            corr = cov / (sd_i * sd_j)
        for k, v in enumerate((contrast, dissim, homog, math.sqrt(asm), corr, asm)):
            totals[k] += v
    return tuple(totals)


def ref_glcm_skimage(grey, region, d):
    from skimage.feature import graycomatrix, graycoprops

    masked = (grey * region).astype("uint16")
    masked[region == 0] = 256
    nz = np.argwhere(masked != 0)
    lo, hi = nz.min(axis=0), nz.max(axis=0)
    g = graycomatrix(masked[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1], [d], [0, np.pi / 2], levels=257)
    g = g[:256, :256]
    return tuple(
        float(np.sum(graycoprops(g, p)))
        for p in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
    )


def ref_texture_props(image, mask, mode, glcm):
    h, w = mask.shape
    if mask.sum() < h * w * 0.0005:
        return (None,) * 6
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    if mode == "obj":
        d = max(int(ref_diameter(mask) * 0.01), 1)
    else:
        diag = math.sqrt(h * h + w * w)
        d = int(diag * 0.01) if diag >= 100 else 1
    return glcm(grey, mask, d)


def ref_data_stats(image, mask):
    h, w = mask.shape
    size = int(mask.sum()) / (h * w)
    cc = ndimage.label(mask.astype(bool))[1]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    edges = cv2.Canny(grey * mask, 100, 200)
    return size, cc, int(np.sum((edges > 0).astype(np.uint8) * mask)) / int(mask.sum())


def _load(path, i, what):
    names = {
        "green": f"points/{i}_green.npy",
        "red": f"points/{i}_red.npy",
        "score": f"scores/{i}score.npy",
    }
    return np.load(os.path.join(path, names[what]), allow_pickle=True)


def ref_general(path, i, t):
    g, r, s = _load(path, i, "green"), _load(path, i, "red"), _load(path, i, "score")
    return [len(g[t]) + len(r[t]), len(g[t]), len(r[t]), float(s[t])]


def _try(fn):
    try:
        value = fn()
    except (ValueError, ZeroDivisionError):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def ref_prompt_stats(mask, path, i, t):
    h, w = mask.shape
    if mask.sum() < h * w * 0.0005:
        return [None] * 8
    green = [tuple(p) for p in _load(path, i, "green")[t]]
    red = [tuple(p) for p in _load(path, i, "red")[t]]
    coverage = ref_coverage(np.asarray(green, dtype=np.float64).reshape(-1, 2), mask)
    diameter = ref_diameter(mask)
    diag = math.sqrt(h * h + w * w)
    return [
        coverage,
        _try(lambda: ref_max_dist(green) / diameter),
        _try(lambda: ref_avg_min(green) / diameter),
        _try(lambda: ref_chamfer(green, red) / diag),
        _try(lambda: ref_max_dist(red) / diag),
        _try(lambda: coverage / len(green)),
        ref_encasing(red, mask, -1) / diag,
        ref_encasing(green, mask, 1) / diameter,
    ]


PROMPT = (
    "Prompt coverage", "Max spread", "Avg min distance", "Inc/Exc distance", "Max spread exc",
    "Inc efficiency",
)  # fmt: skip


def reference_stats(prompts_root, data_root, dataset, object_counts=None, glcm="skimage", lag=True):
    """(columns, rows) as the released script makes its DataFrame from an export on disk;
    folders in os.scandir order. `object_counts`: per image, used as given (else 1)."""
    glcm_fn = ref_glcm_skimage if glcm == "skimage" else ref_glcm_loops
    base = os.path.join(prompts_root, dataset)
    folders = [f.path for f in os.scandir(base) if f.is_dir()]
    masks = np.load(os.path.join(data_root, dataset, "labels.npy"), allow_pickle=True)
    images = np.load(os.path.join(data_root, dataset, "samples.npy"), allow_pickle=True)
    data_stats = []
    for k in range(len(masks)):
        data_stats.append(
            (
                *ref_data_stats(images[k], masks[k]),
                *ref_texture_props(images[k], masks[k], "obj", glcm_fn),
                *ref_texture_props(images[k], 1 - masks[k], "bckg", glcm_fn),
            )
        )
    data_names = (
        "Mask size", "CC Density", "Texture score", "Contrast", "Dissimilarity", "Homogeneity",
        "Energy", "Correlation", "ASM", "BK Contrast", "BK Dissimilarity", "BK Homogeneity",
        "BK Energy", "BK Correlation", "BK ASM",
    )  # fmt: skip
    records = []
    for folder in folders:
        n_files = len([f for f in os.listdir(os.path.join(folder, "eachround"))])
        for i in range(n_files):
            image_dict = {"Dataset": dataset, "Student": folder.replace(os.sep, "/"), "Image ID": i}
            rounds = np.load(os.path.join(folder, "eachround", f"{i}_.npy"))
            image_dict["Number of rounds"] = len(set(rounds.tolist()))
            order = np.load(os.path.join(folder, "sorts", f"{i}_sort.npy"))
            if len(order) == 0:
                continue
            best = int(order[0])
            best_round = int(rounds[best])
            zero = int(sum(1 for x in rounds if x == 0))
            image_dict["Best round"] = best_round
            image_dict["Best round length"] = int(sum(1 for x in rounds if x == best_round))
            image_dict["Best timestamp"] = best if best_round == 0 else best - zero
            first_t = 0 if best_round == 0 else zero
            last_t = len(rounds) - 1 if best_round == int(rounds[-1]) else zero - 1
            for label, t in (("First", first_t), ("Best", best), ("Last", last_t)):
                n, g, r, s = ref_general(folder, i, t)
                image_dict[f"{label} # points"] = n
                image_dict[f"{label} # green points"] = g
                image_dict[f"{label} # red points"] = r
                image_dict[f"{label} score"] = s
            image_dict["Best-first gap"] = image_dict["Best score"] - image_dict["First score"]
            for name, value in zip(data_names, data_stats[i], strict=True):
                image_dict[name] = value
            image_dict["Obj Density"] = 1 if object_counts is None else int(object_counts[i])
            cc = image_dict["CC Density"]
            image_dict["Merged"] = int(image_dict["Obj Density"] > cc)
            image_dict["Split"] = int(image_dict["Obj Density"] < cc)
            image_dict["Compact"] = int(image_dict["Obj Density"] == cc)
            for j in range(len(order)):
                row = dict(image_dict)
                row["Current timestamp"] = j
                row["Current round"] = int(rounds[j])
                n, g, r, s = ref_general(folder, i, j)
                row["Current # points"] = n
                row["Current # green points"] = g
                row["Current # red points"] = r
                row["Current score"] = s
                row["Current is best"] = int(j == best)
                values = ref_prompt_stats(masks[i], folder, i, j)
                for name, value in zip(PROMPT, values[:6], strict=True):
                    row[name] = value
                if lag:  # the image's dict receives them; the next row copies them
                    image_dict["Exc encasing"], image_dict["Inc encasing"] = values[6], values[7]
                else:
                    row["Exc encasing"], row["Inc encasing"] = values[6], values[7]
                records.append(row)
    columns: list[str] = []
    for record in records:
        for key in record:
            if key not in columns:
                columns.append(key)
    return columns, [[record.get(c) for c in columns] for record in records]


# ----------------------------------------------------------------------------- exports


def _object_array(items):
    out = np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        out[k] = item
    return out


def write_export(root, dataset, images, labels, folders):
    """The PointPrompt layout as our exporter writes it. `folders`: {name: [attempt or None per
    image]}, attempt = dict(rounds, scores, green, red) (sort computed as the exporter does)."""
    root = Path(root)
    data = root / "Image datasets" / dataset
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "samples.npy", _object_array(images), allow_pickle=True)
    np.save(data / "labels.npy", _object_array(labels), allow_pickle=True)
    for name, attempts in folders.items():
        base = root / "Prompting results" / dataset / name
        for sub in ("points", "scores", "sorts", "eachround"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i, attempt in enumerate(attempts):
            attempt = attempt or {"rounds": [], "scores": [], "green": [], "red": []}
            scores = np.asarray(attempt["scores"], dtype=np.float64)
            np.save(
                base / "points" / f"{i}_green.npy",
                _object_array(attempt["green"]),
                allow_pickle=True,
            )
            np.save(
                base / "points" / f"{i}_red.npy", _object_array(attempt["red"]), allow_pickle=True
            )
            np.save(base / "scores" / f"{i}score.npy", scores)
            np.save(
                base / "sorts" / f"{i}_sort.npy",
                np.argsort(-scores, kind="stable").astype(np.int64),
            )
            np.save(base / "eachround" / f"{i}_.npy", np.asarray(attempt["rounds"], dtype=np.int64))
    return root


def random_mask(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
        mask |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    if rng.random() < 0.3:  # a hole
        cy, cx = np.argwhere(mask)[rng.integers(int(mask.sum()))]
        mask[max(cy - 2, 0) : cy + 2, max(cx - 2, 0) : cx + 2] = 0
    if mask.sum() < 10:
        mask[h // 3 : h // 2, w // 3 : w // 2] = 1
    return mask


def random_image(rng, h, w, mask):
    base = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    smooth = cv2.GaussianBlur(base, (0, 0), 2.0)
    smooth[mask == 1] *= 0.6
    return np.clip(smooth, 0, 255).astype(np.uint8)


def random_points(rng, h, w, n, floats=False):
    if n == 0:
        return np.zeros((0, 2), dtype=np.float64 if floats else np.int64)
    if floats:
        return np.column_stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)])
    pts = np.column_stack([rng.integers(0, w, n), rng.integers(0, h, n)]).astype(np.int64)
    if n >= 3 and rng.random() < 0.1:  # collinear
        pts[:, 1] = pts[0, 1]
    if n >= 2 and rng.random() < 0.1:  # a duplicate
        pts[1] = pts[0]
    return pts


def random_attempt(rng, h, w, floats=False, max_t=8):
    t_count = int(rng.integers(1, max_t + 1))
    split = int(rng.integers(1, t_count + 1)) if rng.random() < 0.5 else t_count
    rounds = [0] * split + [1] * (t_count - split)
    if rng.random() < 0.05:
        rounds = [1] * t_count  # no round 0: the released arithmetic goes negative
    green, red = [], []
    for _ in range(t_count):
        ng = int(rng.integers(0, 7)) if rng.random() < 0.9 else 0
        nr = int(rng.integers(0, 5))
        green.append(random_points(rng, h, w, ng, floats))
        red.append(random_points(rng, h, w, nr, floats))
    scores = rng.random(t_count)
    if rng.random() < 0.2:
        scores[rng.integers(t_count)] = scores.max()  # ties
    return {"rounds": rounds, "scores": scores, "green": green, "red": red}


def generated_export(
    root,
    rng,
    dataset="Generated",
    n_images=4,
    n_folders=3,
    shape=(40, 56),
    floats=False,
    max_t=8,
    small_image=True,
):
    h, w = shape
    images, labels = [], []
    for k in range(n_images):
        mask = random_mask(rng, h, w)
        if small_image and k == n_images - 1:
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[h // 2, w // 2] = 1  # under 0.05% of the image: no prompt features
        labels.append(mask)
        images.append(random_image(rng, h, w, mask))
    folders = {}
    for f in range(n_folders):
        folders[f"st{f + 1}"] = [
            None if rng.random() < 0.15 else random_attempt(rng, h, w, floats, max_t)
            for _ in range(n_images)
        ]
    write_export(root, dataset, images, labels, folders)
    return images, labels, folders
