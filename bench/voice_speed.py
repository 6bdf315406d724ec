"""VOICE speed: ours (one forward pass, Jacobian rows) vs the reference per-class loop (one full
forward and backward per contrast class) on resnet18 without weights, 1000 classes, one
224 x 224 image, CPU. Prints one JSON line: times, their ratio, max abs map differences."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a fresh clone
from interventions.voice import voice  # noqa: E402


def loop_map(model: torch.nn.Module, x: torch.Tensor, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """One reference Grad-CAM-style map: forward, loss.backward(), hooked dL/dA, weights, map."""
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    handle = model.layer4.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    model.zero_grad()
    loss_fn(logits).backward()
    a, g = store["a"].detach()[0], store["a"].grad[0]
    cam = F.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0))
    up = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[
        0, 0
    ]
    lo, hi = up.min(), up.max()
    return ((up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)), logits.detach()[0]


def loop_voice(model: torch.nn.Module, x: torch.Tensor, n_classes: int):
    expl, logits = loop_map(model, x, lambda z: z[0, z[0].argmax()])
    pred, second = logits.topk(2).indices.tolist()
    ce = lambda q: lambda z: F.cross_entropy(z, torch.tensor([q]))  # noqa: E731
    contrast, _ = loop_map(model, x, ce(second))
    maps = []
    for q in tqdm(range(n_classes), desc="per-class loop", leave=False):
        if q != pred:
            maps.append(loop_map(model, x, ce(q))[0])
    var = torch.stack(maps).var(0)
    lo, hi = var.min(), var.max()
    unc = (var - lo) / (hi - lo) if hi > lo else torch.zeros_like(var)
    return expl, contrast, unc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (best kept)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=args.classes).eval()
    x = torch.randn(1, 3, args.size, args.size)
    voice(model, x, "layer4")  # warm-up
    ours_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = voice(model, x, "layer4")
        ours_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    expl, contrast, unc = loop_voice(model, x, args.classes)
    loop_time = time.perf_counter() - t0
    ours = min(ours_times)
    print(
        json.dumps(
            {
                "bench": "voice_speed",
                "model": "resnet18 (weights=None)",
                "classes": args.classes,
                "input": [args.size, args.size],
                "threads": torch.get_num_threads(),
                "ours_s": round(ours, 4),
                "loop_s": round(loop_time, 3),
                "ratio": round(loop_time / ours, 1),
                "max_abs_diff_uncertainty": float((result.uncertainty[0] - unc).abs().max()),
                "max_abs_diff_explanation": float((result.explanation[0] - expl).abs().max()),
                "max_abs_diff_contrast": float((result.contrast[0] - contrast).abs().max()),
            }
        )
    )


if __name__ == "__main__":
    main()
