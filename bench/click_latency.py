"""Click -> mask latency over HTTP against a live stack (gunicorn + a real Celery `interactive`
worker + Redis + PostgreSQL) with the image embedding cached beforehand (through the `batch`
worker), for the `classical` backend and a randomly initialised, seeded vit_b SAM (the released
vit_b's architecture, hence its cost).

One annotator clicks sequentially; each timed request is a POST of one event that produces a
timestep (a prediction). Every 12 events the points are cleared so prompts stay at realistic
sizes (1-11 points). Prints ONE JSON line: per backend p50 / p95 / mean client-side ms, the
server's own latency_ms p50, the HTTP floor (events without a prediction, same process) and
ratios against it.

    .venv/bin/python bench/click_latency.py [--clicks 80] [--backends classical,vit_b]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live_stack import LiveStack, random_sam_vit_b_checkpoint, services_missing  # noqa: E402

CHECKPOINT = Path(tempfile.gettempdir()) / "intervene-bench" / "sam_vit_b_random_seed0.pth"
PROTOCOL = {"stagnation_limit": 100_000, "max_rounds": 1}  # clicks never end the image


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2) if values else float("nan")


def run_backend(backend: str, clicks: int, warmup: int, seed: int, worker_threads: int) -> dict:
    checkpoint = random_sam_vit_b_checkpoint(CHECKPOINT, seed=0) if backend == "vit_b" else None
    kind = "sam" if backend == "vit_b" else "classical"
    with LiveStack(
        participants=1,
        images=1,
        backend=kind,
        sam_checkpoint=checkpoint,
        protocol=PROTOCOL,
        consented=True,
        embed=True,
        worker_threads=worker_threads,
    ) as stack:
        annotator = stack.annotator(0)
        aid = annotator.assignments[0]
        rng = random.Random(seed)
        timed: list[float] = []
        server: list[float] = []
        floor: list[float] = []
        events = 0
        bar = tqdm(total=warmup + clicks, desc=f"clicks {backend}", file=sys.stderr)
        done = 0
        while done < warmup + clicks:
            if events % 12 == 0 and events:
                body = annotator.body(aid, "clear")
            else:
                mode = "green" if events % 12 in (0, 1, 4, 7, 10) else "red"
                body = annotator.body(
                    aid,
                    "add",
                    mode,
                    rng.randrange(annotator.width),
                    rng.randrange(annotator.height),
                )
            started = time.perf_counter()
            response = annotator.send(aid, body)
            elapsed = (time.perf_counter() - started) * 1000.0
            events += 1
            if response.status_code != 200:
                raise RuntimeError(
                    f"{backend}: event answered {response.status_code}: {response.text[:300]}"
                )
            answer = response.json()
            if answer["timestep"] is None:
                if body["action"] == "add":
                    floor.append(elapsed)
                continue
            done += 1
            bar.update(1)
            if done > warmup:
                timed.append(elapsed)
                server.append(answer["latency_ms"])
        bar.close()
        audit = stack.audit()
        if audit["problems"]:
            raise RuntimeError(f"{backend}: audit failed: {audit['problems']}")
    return {
        "clicks": len(timed),
        "p50_ms": percentile(timed, 50),
        "p95_ms": percentile(timed, 95),
        "mean_ms": round(float(np.mean(timed)), 2),
        "server_p50_ms": percentile(server, 50),
        "http_floor_p50_ms": percentile(floor, 50),
        "p50_over_floor": round(percentile(timed, 50) / max(percentile(floor, 50), 1e-9), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=80, help="timed clicks per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed clicks first (model load)")
    parser.add_argument("--backends", default="classical,vit_b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of the interactive worker (default: all cores; one annotator clicks, "
        "so the worker is the only process computing)",
    )
    args = parser.parse_args()
    reason = services_missing()
    if reason:
        raise SystemExit(f"click_latency needs the real services: {reason}")
    result: dict = {"bench": "click_latency", "goal_vit_b_p95_ms": 150}
    for backend in args.backends.split(","):
        result[backend] = run_backend(
            backend, args.clicks, args.warmup, args.seed, args.worker_threads
        )
    result["worker_threads"] = args.worker_threads
    if "classical" in result and "vit_b" in result:
        result["vit_b_over_classical_p50"] = round(
            result["vit_b"]["p50_ms"] / result["classical"]["p50_ms"], 2
        )
        result["vit_b_goal_met"] = result["vit_b"]["p95_ms"] <= 150
    print(json.dumps(result))


if __name__ == "__main__":
    main()
