"""The intervention precompute with every trust score vs the five it stored before the released
GradTrust was added: `workers.intervention_tasks.image_analyses` (Grad-CAM, CounterfactualCAM,
ContrastCAM, VOICE, causal curves, smallest flips, trust) on the demo CNN and 128 px demo scenes,
both ways interleaved in one process. Prints one JSON line: median seconds per image each way,
their ratio, and trust_scores alone per image each way."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
FIVE = ["softmax", "entropy", "margin", "logit", "grad_trust"]  # what the precompute stored before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import django

    django.setup()
    import torch

    import interventions.trust as trust
    import workers.intervention_tasks as tasks
    from interventions.demo_data import generate_scene
    from interventions.models import load_classifier

    torch.set_num_threads(args.threads)
    classifier = load_classifier("demo", ROOT / "interventions" / "weights" / "demo_cnn.pt")
    scenes = [generate_scene("Clean shapes", i, seed=0) for i in range(args.images)]
    every = trust.trust_scores

    def five(model, x, *rest, **options):
        return every(model, x, scores=FIVE)

    def per_image(score_fn) -> float:
        trust.trust_scores = score_fn  # image_analyses imports it at call time
        try:
            times = []
            for scene in scenes:
                t0 = time.perf_counter()
                tasks.image_analyses(classifier, scene.image, "blur", scene.label)
                times.append(time.perf_counter() - t0)
            return float(np.median(times))
        finally:
            trust.trust_scores = every

    per_image(every)  # warm-up
    runs = {"five": [], "twelve": []}
    for _ in range(args.rounds):
        runs["five"].append(per_image(five))
        runs["twelve"].append(per_image(every))
    x = classifier.preprocess(scenes[0].image)
    alone = {}
    for name, scores in (("five", FIVE), ("twelve", None)):
        t0 = time.perf_counter()
        for _ in range(10):
            every(classifier.module, x, scores=scores)
        alone[name] = (time.perf_counter() - t0) / 10
    five_s, twelve_s = min(runs["five"]), min(runs["twelve"])
    print(
        json.dumps(
            {
                "bench": "precompute_trust",
                "images": args.images,
                "threads": args.threads,
                "five_scores_s_per_image": round(five_s, 4),
                "twelve_scores_s_per_image": round(twelve_s, 4),
                "ratio_twelve_vs_five": round(twelve_s / five_s, 3),
                "trust_only_five_s": round(alone["five"], 5),
                "trust_only_twelve_s": round(alone["twelve"], 5),
            }
        )
    )


if __name__ == "__main__":
    main()
