"""An experiment's arm comparison (studies/core/design_stats.compare_arms) on generated
two-arm studies: its speed and whether its intervals cover the planted effect.

Each replication generates a study of --participants x --images rows, between participants
(half the participants in each arm, every one on every image) and within participants (every
participant in both arms, half the images each, each image in each arm for half the
participants), with participant and image random intercepts:
  - continuous (IoU-like): 0.55 + effect * arm + u_p + v_i + e, clipped to [0, 1];
  - binary: Bernoulli(clip(0.5 + effect * arm + u_p + v_i, 0.02, 0.98)).
The planted effect is the difference the generator makes in the expected outcome, clipping
included (a 10^6-draw Monte Carlo), so coverage is judged against the true difference.

Prints one JSON line: per outcome and design, the median seconds of the bootstrap (all of
compare_arms but the model) and of the mixed model, the coverage rate of the bootstrap and
the model interval over the replications, how often each excluded 0, their mean widths, the
mean estimate, and the share of fits with a model note.

    .venv/bin/python bench/design_analysis.py [--participants 200] [--images 24]
        [--replications 20] [--n-boot 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from studies.core import design_stats  # noqa: E402

ARMS = ["A", "B"]
SD_PARTICIPANT, SD_IMAGE, SD_RESIDUAL = 0.08, 0.06, 0.07
BINARY_SD_PARTICIPANT, BINARY_SD_IMAGE = 0.1, 0.08


def continuous(eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(eta + rng.normal(0, SD_RESIDUAL, eta.shape), 0.0, 1.0)


def binary_p(eta: np.ndarray) -> np.ndarray:
    return np.clip(eta, 0.02, 0.98)


def planted(kind: str, effect: float) -> float:
    """The true difference in the expected outcome between the arms, clipping included."""
    rng = np.random.default_rng(12345)
    n = 1_000_000
    if kind == "continuous":
        sd = np.hypot(SD_PARTICIPANT, SD_IMAGE)
        base = rng.normal(0.55, sd, n)
        return float(continuous(base + effect, rng).mean() - continuous(base, rng).mean())
    sd = np.hypot(BINARY_SD_PARTICIPANT, BINARY_SD_IMAGE)
    base = rng.normal(0.5, sd, n)
    return float(binary_p(base + effect).mean() - binary_p(base).mean())


def generate(kind, method, n_participants, n_images, effect, rng) -> tuple[list[dict], float]:
    p = np.repeat(np.arange(n_participants), n_images)
    i = np.tile(np.arange(n_images), n_participants)
    arm = p % 2 if method == "between" else (p + i) % 2
    if kind == "continuous":
        u = rng.normal(0, SD_PARTICIPANT, n_participants)
        v = rng.normal(0, SD_IMAGE, n_images)
        eta = 0.55 + effect * arm + u[p] + v[i]
        y = continuous(eta, rng)
        clipped = float(np.mean((y == 0.0) | (y == 1.0)))
        values = y.tolist()
    else:
        u = rng.normal(0, BINARY_SD_PARTICIPANT, n_participants)
        v = rng.normal(0, BINARY_SD_IMAGE, n_images)
        prob = binary_p(0.5 + effect * arm + u[p] + v[i])
        values = (rng.random(prob.shape) < prob).tolist()
        clipped = 0.0
    rows = [
        {"participant": f"p{a}", "image": int(b), "arm": ARMS[c], "y": d}
        for a, b, c, d in zip(p.tolist(), i.tolist(), arm.tolist(), values, strict=True)
    ]
    return rows, clipped


class ModelTimer:
    """Wraps design_stats._mixed_model to time the model apart from the rest of compare_arms."""

    def __init__(self):
        self.inner = design_stats._mixed_model
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--replications", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--effect", type=float, default=0.04, help="continuous outcome")
    parser.add_argument("--binary-effect", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    effects = {"continuous": args.effect, "binary": args.binary_effect}
    truth = {kind: planted(kind, effect) for kind, effect in effects.items()}
    timer = ModelTimer()
    design_stats._mixed_model = timer
    cases = [(kind, method) for kind in effects for method in ("between", "within")]
    results = {f"{k}_{m}": [] for k, m in cases}
    clipped = []
    rng = np.random.default_rng(args.seed)
    for rep in tqdm(range(args.replications), desc="replications", file=sys.stderr):
        for kind, method in cases:
            rows, share = generate(kind, method, args.participants, args.images, effects[kind], rng)
            if kind == "continuous":
                clipped.append(share)
            timer.seconds = 0.0
            t0 = time.perf_counter()
            (r,) = design_stats.compare_arms(
                rows,
                "y",
                arms=ARMS,
                method=method,
                binary=kind == "binary",
                seed=args.seed + rep,
                n_boot=args.n_boot,
            )
            total = time.perf_counter() - t0
            r["model_s"] = timer.seconds
            r["bootstrap_s"] = total - timer.seconds
            results[f"{kind}_{method}"].append(r)
    design_stats._mixed_model = timer.inner

    def summary(kind: str, rs: list[dict]) -> dict:
        t = truth[kind]
        fitted = [r for r in rs if r["model_estimate"] is not None]
        return {
            "planted": round(t, 5),
            "bootstrap_s": round(statistics.median(r["bootstrap_s"] for r in rs), 4),
            "model_s": round(statistics.median(r["model_s"] for r in rs), 3),
            "mean_difference": round(statistics.fmean(r["difference"] for r in rs), 5),
            "mean_model_estimate": round(statistics.fmean(r["model_estimate"] for r in fitted), 5)
            if fitted
            else None,
            "bootstrap_coverage": statistics.fmean(r["ci_low"] <= t <= r["ci_high"] for r in rs),
            "model_coverage": statistics.fmean(
                r["model_ci_low"] <= t <= r["model_ci_high"] for r in fitted
            )
            if fitted
            else None,
            "bootstrap_excludes_0": statistics.fmean(r["ci_low"] > 0 for r in rs),
            "model_excludes_0": statistics.fmean(r["model_ci_low"] > 0 for r in fitted)
            if fitted
            else None,
            "bootstrap_width": round(statistics.fmean(r["ci_high"] - r["ci_low"] for r in rs), 5),
            "model_width": round(
                statistics.fmean(r["model_ci_high"] - r["model_ci_low"] for r in fitted), 5
            )
            if fitted
            else None,
            "models_fitted": len(fitted),
            "model_notes": sorted({r["model_note"] for r in rs if r["model_note"]}),
        }

    print(
        json.dumps(
            {
                "bench": "design_analysis",
                "participants": args.participants,
                "images": args.images,
                "rows": args.participants * args.images,
                "replications": args.replications,
                "n_boot": args.n_boot,
                "continuous_clipped_share": round(statistics.fmean(clipped), 6),
                **{name: summary(name.split("_")[0], rs) for name, rs in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
