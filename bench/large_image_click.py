"""A click on a 4096 x 4096 image with the default (classical) segmenter: on the full-size image
(what imports stored before) vs on the working copy an import stores now (longest side
IMPORT_MAX_SIDE, default 1024), same picture, same point, same process. Prints ONE JSON line:
embed and predict seconds for each, and the ratios full / working copy.

    .venv/bin/python bench/large_image_click.py [--side 4096] [--max-side 1024] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a fresh clone
from interventions.segmentation import get_backend  # noqa: E402
from interventions.segmentation.backend import BackendSpec  # noqa: E402


def picture(side: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side * 0.37) ** 2 + (xx - side * 0.54) ** 2 < (side * 0.17) ** 2
    image = np.empty((side, side, 3), np.uint8)
    image[:] = (40 + (xx // 64) % 8)[..., None]
    image[disc] = (200, 120, 60)
    return image, disc


def timed_click(backend, image: np.ndarray, point: tuple[float, float]) -> tuple[float, float]:
    started = time.perf_counter()
    embedding = backend.embed(image)
    embedded = time.perf_counter()
    backend.predict(embedding, np.array([point], np.float64), np.array([1]))
    return embedded - started, time.perf_counter() - embedded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from studies.core.importers import working_copy

    image, disc = picture(args.side)
    small, small_disc, scale = working_copy(image, disc, args.max_side, "bench")
    backend = get_backend(BackendSpec(kind="classical"))
    point = (args.side * 0.54, args.side * 0.37)
    results = {}
    for label, pixels, at in (
        ("working_copy", small, (point[0] * scale, point[1] * scale)),
        ("full", image, point),
    ):
        runs = [timed_click(backend, pixels, at) for _ in range(args.repeat)]
        results[label] = {
            "side": int(pixels.shape[1]),
            "embed_s": round(min(r[0] for r in runs), 3),
            "predict_s": round(min(r[1] for r in runs), 3),
        }
    full, copy = results["full"], results["working_copy"]
    print(
        json.dumps(
            {
                "bench": "large_image_click",
                "backend": "classical",
                **results,
                "ratio_embed": round(full["embed_s"] / copy["embed_s"], 1),
                "ratio_predict": round(full["predict_s"] / copy["predict_s"], 1),
                "ratio_click": round(
                    (full["embed_s"] + full["predict_s"]) / (copy["embed_s"] + copy["predict_s"]), 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
