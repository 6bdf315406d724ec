"""Deletion + insertion speed: ours (batched over steps) vs RISE's loop (one forward per step)
on resnet18 without weights, one 224 x 224 image, step 224 (225 scores per curve), CPU, with a
Grad-CAM saliency map; each side is timed --repeats times, interleaved, fastest run kept.
Prints one JSON line: times, ratio, max abs score/AUC differences."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a fresh clone
from interventions.causal import causal_auc, causal_curve, rise_blur  # noqa: E402
from interventions.explain import grad_cam  # noqa: E402


def rise_loop(model, img, saliency, mode, step):
    """RISE CausalMetric.single_run: one forward per step, pixels copied in place."""
    _, _, h, w = img.shape
    hw = h * w
    with torch.inference_mode():
        c = int(model(img).argmax(1))
        start, finish = (
            (img.clone(), torch.zeros_like(img))
            if mode == "deletion"
            else (rise_blur(img), img.clone())
        )
        n_steps = (hw + step - 1) // step
        scores = np.empty(n_steps + 1)
        order = np.argsort(-saliency.reshape(hw), kind="stable")
        for i in tqdm(range(n_steps + 1), desc=f"RISE loop ({mode})", leave=False):
            scores[i] = float(torch.softmax(model(start), 1)[0, c])
            if i < n_steps:
                coords = order[step * i : step * (i + 1)]
                start.view(1, 3, hw)[0, :, coords] = finish.view(1, 3, hw)[0, :, coords]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--step", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the fastest counts")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, args.size, args.size)
    saliency, _ = grad_cam(model, x, "layer4")
    # Grad-CAM maps are piecewise bilinear and may tie; a tiny index ramp breaks ties so both
    # orders agree whatever the sort algorithm.
    sal = (
        saliency[0].double().numpy()
        + np.arange(args.size * args.size).reshape(args.size, args.size) * -1e-12
    )
    with torch.inference_mode():
        model(x)  # warm-up
    # The machine is shared: both sides run ``repeats`` times, interleaved, and each keeps its
    # fastest run (the least disturbed one), so a busy moment does not favour either side.
    ours_times, loop_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = [
            causal_curve(model, x, sal, m, args.step, batch_size=args.batch_size)
            for m in ("deletion", "insertion")
        ]
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop = [rise_loop(model, x, sal, m, args.step) for m in ("deletion", "insertion")]
        loop_times.append(time.perf_counter() - t0)
    ours_time, loop_time = min(ours_times), min(loop_times)
    score_diff = max(float(np.abs(o.scores[0] - s).max()) for o, s in zip(ours, loop, strict=True))
    auc_diff = max(
        abs(float(o.auc[0]) - float(causal_auc(s))) for o, s in zip(ours, loop, strict=True)
    )
    print(
        json.dumps(
            {
                "bench": "causal_speed",
                "model": "resnet18 (weights=None)",
                "input": [args.size, args.size],
                "step": args.step,
                "scores_per_curve": int(ours[0].scores.shape[1]),
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "ours_s": round(ours_time, 3),
                "loop_s": round(loop_time, 3),
                "ratio": round(loop_time / ours_time, 2),
                "max_abs_diff_scores": score_diff,
                "max_abs_diff_auc": auc_diff,
            }
        )
    )


if __name__ == "__main__":
    main()
