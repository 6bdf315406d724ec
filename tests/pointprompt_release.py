"""A small generated tree in the layout of the released PointPrompt data (Zenodo 11187949):

    ROOT/Image datasets/<D>/samples.npy, labels.npy      object arrays (uint8 H x W x 3, {0, 1})
    ROOT/Prompting data/<D>/st<k>/points/<i>_green.npy, <i>_red.npy   object (T,) of (n_t x 2)
                                 scores/<i>score.npy float64 (T,), sorts/<i>_sort.npy (T,)
                                 eachround/<i>_.npy (T,) 0-based, masks/<i>_<t>_mask.png 0/255

Every annotator folder has files for every image index (T = 0 where the annotator never scored
it), as the released feature script expects. Tiny images (16 x 20), seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def object_array(items: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        out[k] = item
    return out


def write_release_tree(
    root: Path,
    datasets: dict[str, int],
    annotators: int = 2,
    seed: int = 0,
    prompts_folder: str = "Prompting data",
    height: int = 16,
    width: int = 20,
) -> dict:
    """Write the tree; return {dataset: {"samples", "labels", "results": {(st, i): steps}}} where
    steps is a list of (green (n x 2), red (n x 2), score, round) per timestep."""
    rng = np.random.default_rng(seed)
    truth: dict = {}
    for name, n in datasets.items():
        images, labels = [], []
        for _ in range(n):
            images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            label = np.zeros((height, width), dtype=np.uint8)
            top, left = rng.integers(1, height // 2), rng.integers(1, width // 2)
            label[top : top + height // 3, left : left + width // 3] = 1
            labels.append(label)
        folder = root / "Image datasets" / name
        folder.mkdir(parents=True)
        np.save(folder / "samples.npy", object_array(images), allow_pickle=True)
        np.save(folder / "labels.npy", object_array(labels), allow_pickle=True)
        results = {}
        for k in range(1, annotators + 1):
            st = root / prompts_folder / name / f"st{k}"
            for sub in ("eachround", "masks", "points", "scores", "sorts"):
                (st / sub).mkdir(parents=True)
            for i in range(n):
                T = 0 if (i + k) % 4 == 0 else int(rng.integers(1, 5))
                steps, greens, reds = [], [], []
                rounds = np.sort(rng.integers(0, 2, T)).astype(np.int64)
                for t in range(T):
                    green = np.stack(
                        [rng.integers(0, width, t + 1), rng.integers(0, height, t + 1)], axis=1
                    ).astype(np.int64)
                    red = np.stack(
                        [rng.integers(0, width, t % 3), rng.integers(0, height, t % 3)], axis=1
                    ).astype(np.int64)
                    greens.append(green)
                    reds.append(red)
                    mask = rng.random((height, width)) < 0.3
                    Image.fromarray(mask.astype(np.uint8) * 255).save(
                        st / "masks" / f"{i}_{t}_mask.png"
                    )
                    steps.append((green, red, None, int(rounds[t])))
                scores = rng.random(T)
                if T >= 2:
                    scores[1] = scores[0]  # a tie: the analysis takes the first best
                steps = [
                    (g, r, float(s), rd) for (g, r, _, rd), s in zip(steps, scores, strict=True)
                ]
                np.save(st / "points" / f"{i}_green.npy", object_array(greens), allow_pickle=True)
                np.save(st / "points" / f"{i}_red.npy", object_array(reds), allow_pickle=True)
                np.save(st / "scores" / f"{i}score.npy", scores.astype(np.float64))
                np.save(st / "sorts" / f"{i}_sort.npy", np.argsort(-scores, kind="stable"))
                np.save(st / "eachround" / f"{i}_.npy", rounds)
                if T:
                    results[(f"st{k}", i)] = steps
        truth[name] = {"samples": images, "labels": labels, "results": results}
    return truth
