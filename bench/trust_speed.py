"""Trust score speed: every score of ``trust_scores`` on resnet18 without weights (1000 classes,
224 x 224, CPU unless --device), batched vs one image at a time in the same process. Prints one JSON line:
images per second (all scores) both ways, their ratio, the largest relative difference between
the two, and with ``--breakdown`` the same per score (Purview also with torch.func vmap)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from interventions.trust import TRUST_SCORE_NAMES, trust_scores  # noqa: E402

GROUPS = {  # scores computed together count as one entry of the breakdown
    "purview_initial": ("purview_initial", "purview_final"),
}


def timed(fn, repeats: int = 1) -> tuple[float, dict[str, np.ndarray]]:
    """Best wall time of ``repeats`` runs (the machine may be shared) and the last result."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def batched(model, x, batch_size: int, **kw) -> dict[str, np.ndarray]:
    parts = [
        trust_scores(model, x[lo : lo + batch_size], **kw) for lo in range(0, len(x), batch_size)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def one_at_a_time(model, x, **kw) -> dict[str, np.ndarray]:
    return batched(model, x, 1, **kw)


def max_rel_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for name in TRUST_SCORE_NAMES:
        if name in a:
            diff = np.abs(a[name] - b[name]) / np.maximum(np.abs(b[name]), 1e-12)
            worst = max(worst, float(diff.max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (best kept)")
    parser.add_argument("--breakdown", action="store_true", help="also time each score alone")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(args.device)
    x = torch.randn(args.n, 3, args.size, args.size).to(args.device)
    batched(model, x[: args.batch_size + 1], args.batch_size)  # warm-up: both batch shapes
    t_batch, res_batch = timed(lambda: batched(model, x, args.batch_size), args.repeats)
    t_single, res_single = timed(lambda: one_at_a_time(model, x), args.repeats)
    n_scores = len(TRUST_SCORE_NAMES)
    figures: dict[str, object] = {
        "bench": "trust_speed",
        "model": "resnet18 (weights=None)",
        "classes": 1000,
        "input": [args.size, args.size],
        "images": args.n,
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "scores": list(TRUST_SCORE_NAMES),
        "batched_images_per_s": round(args.n / t_batch, 3),
        "single_images_per_s": round(args.n / t_single, 3),
        "batched_scores_per_s": round(n_scores * args.n / t_batch, 2),
        "single_scores_per_s": round(n_scores * args.n / t_single, 2),
        "ratio_batched_vs_single": round(t_single / t_batch, 2),
        "max_rel_diff_batched_vs_single": max_rel_diff(res_batch, res_single),
    }
    if args.breakdown:
        per_score = {}
        for name in TRUST_SCORE_NAMES:
            if name == "purview_final":
                continue
            scores = GROUPS.get(name, (name,))
            key = "purview" if name == "purview_initial" else name
            tb, _ = timed(
                lambda s=scores: batched(model, x, args.batch_size, scores=s), args.repeats
            )
            ts, _ = timed(lambda s=scores: one_at_a_time(model, x, scores=s), args.repeats)
            per_score[key] = {
                "batched_images_per_s": round(args.n / tb, 2),
                "single_images_per_s": round(args.n / ts, 2),
                "ratio": round(ts / tb, 2),
            }
        scores = GROUPS["purview_initial"]
        tv, res_vmap = timed(
            lambda: batched(model, x, args.batch_size, scores=scores, per_sample="vmap")
        )
        per_score["purview_vmap"] = {
            "batched_images_per_s": round(args.n / tv, 2),
            "loop_speedup_over_vmap": round(
                per_score["purview"]["batched_images_per_s"] * tv / args.n, 2
            ),
            "max_rel_diff_vs_loop": max_rel_diff(res_vmap, res_batch),
        }
        figures["per_score"] = per_score
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
