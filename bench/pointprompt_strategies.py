"""PointPrompt's released strategies, points per second: ours (interventions/pointprompt/
strategies.py: vectorised windows and distances, our k-medoids) vs the plain reference written
the released way (tests/science/test_pointprompt_strategies.py: global generators, one OpenCV
histogram per window, Python lists, scikit-learn's pairwise_distances), one image at a time, in
the same process, on the same generated images and seed. Prints one JSON line: per strategy both
rates, their ratio and whether every point is equal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from interventions.pointprompt.released_names import POINT_NUMS, RELEASED_STRATEGIES  # noqa: E402
from interventions.pointprompt.strategies import run_released  # noqa: E402
from tests.science.test_pointprompt_strategies import ref_main  # noqa: E402


def images_and_masks(n: int, height: int, width: int, seed: int):
    """Textured scenes with one or two elliptic objects (a few percent to a third of the image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    images, masks = [], []
    for _ in range(n):
        image = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
        mask = np.zeros((height, width), bool)
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            ry, rx = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        image[mask] = rng.integers(100, 255, (int(mask.sum()), 3))
        image[:, ::9] //= 2
        images.append(image)
        masks.append(mask.astype(np.uint8))
    return images, masks


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=6, help="images")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dataset", default="Cow", help="counts from the released table")
    args = parser.parse_args()
    images, masks = images_and_masks(args.n, args.height, args.width, args.seed)
    counts = [POINT_NUMS[args.dataset]] * args.n
    out = {
        "bench": "pointprompt_strategies",
        "images": args.n,
        "size": [args.height, args.width],
        "counts": list(POINT_NUMS[args.dataset]),
        "seed": args.seed,
        "strategies": {},
    }
    for strategy in RELEASED_STRATEGIES:  # warm both (imports, first calls) outside the timing
        run_released(strategy, images[:1], masks[:1], counts[:1], args.seed)
        ref_main(strategy, images[:1], masks[:1], counts[:1], args.seed)
    for strategy in RELEASED_STRATEGIES:
        ours_s, ours = timed(lambda s=strategy: run_released(s, images, masks, counts, args.seed))
        ref_s, ref = timed(lambda s=strategy: ref_main(s, images, masks, counts, args.seed))
        points = sum(len(a) + len(b) for a, b in ours)
        equal = all(
            np.array_equal(a, ra) and np.array_equal(b, rb)
            for (a, b), (ra, rb) in zip(ours, ref, strict=True)
        )
        out["strategies"][strategy] = {
            "points": points,
            "ours_points_per_s": round(points / ours_s, 1),
            "reference_points_per_s": round(points / ref_s, 1),
            "ratio": round(ref_s / ours_s, 2),
            "equal": equal,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
