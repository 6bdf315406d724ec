"""PointPrompt's stats.csv: ours (interventions/pointprompt/features.py, vectorised) against the
released definitions run the released way (tests/science/pointprompt_reference.py: our own plain
walk, loading the .npy files per timestep, the mask's hull per timestep, Python loops over
points), in the same process, on one generated export of >= 20,000 timesteps.

Prints one JSON line: timesteps, both times, the speed ratio end to end (ours reading the export's
files once, as stats_from_export does) and for the computation alone (ours from the arrays in
memory, as the platform's export computes it), whether every value agrees (|diff| <= 1e-9, the
same empty cells) and the largest difference.

    .venv/bin/python bench/pointprompt_features.py [--timesteps 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "science"))

import numpy as np  # noqa: E402
from pointprompt_reference import generated_export, reference_stats  # noqa: E402

from interventions.pointprompt.features import (  # noqa: E402
    prepare_image,
    read_folder,
    released_stats,
)


def empty(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(args.seed)
        # ~8.5 timesteps per attempt, 85% of folder x image attempted
        n_images = 100
        n_folders = max(2, math.ceil(args.timesteps / (n_images * 8.5 * 0.85) * 1.1))
        _, _, folders = generated_export(
            tmp, rng, n_images=n_images, n_folders=n_folders, shape=(64, 80), max_t=16
        )
        n_timesteps = sum(len(a["scores"]) for f in folders.values() for a in f if a)
        if n_timesteps < args.timesteps:
            raise SystemExit(f"generated only {n_timesteps} timesteps; raise the size")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            t0 = time.perf_counter()
            columns, ref_rows = reference_stats("Prompting results", "Image datasets", "Generated")
            released_s = time.perf_counter() - t0
            order = list(dict.fromkeys(Path(r[1]).name for r in ref_rows))
            t0 = time.perf_counter()
            data = Path("Image datasets") / "Generated"
            images = np.load(data / "samples.npy", allow_pickle=True)
            labels = np.load(data / "labels.npy", allow_pickle=True)
            results = Path("Prompting results") / "Generated"
            read = [read_folder(results / name, name) for name in order]
            read_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            contexts = [prepare_image(images[i], labels[i], i) for i in range(len(labels))]
            ours = released_stats("Generated", contexts, read)
            compute_s = time.perf_counter() - t0
            ours_s = read_s + compute_s
        finally:
            os.chdir(cwd)
    same_columns = ours.columns == columns
    max_diff, empties_equal, strings_equal = 0.0, True, True
    for a, b in zip(ref_rows, ours.rows, strict=True):
        for x, y in zip(a, b, strict=True):
            if empty(x) or empty(y):
                empties_equal &= empty(x) and empty(y)
            elif isinstance(x, str):
                strings_equal &= x == y
            else:
                max_diff = max(max_diff, abs(float(x) - float(y)))
    print(
        json.dumps(
            {
                "bench": "pointprompt_features",
                "timesteps": n_timesteps,
                "rows": len(ours.rows),
                "columns": len(ours.columns),
                "images": n_images,
                "folders": n_folders,
                "released_way_s": round(released_s, 3),
                "ours_s": round(ours_s, 3),
                "ours_read_s": round(read_s, 3),
                "ours_compute_s": round(compute_s, 3),
                "ratio": round(released_s / ours_s, 1),
                "ratio_compute": round(released_s / compute_s, 1),
                "equal": bool(
                    same_columns
                    and len(ref_rows) == len(ours.rows)
                    and empties_equal
                    and strings_equal
                    and max_diff <= 1e-9
                ),
                "max_abs_diff": max_diff,
                "same_empty_cells": bool(empties_equal),
            }
        )
    )


if __name__ == "__main__":
    main()
