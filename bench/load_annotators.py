"""N simulated annotators clicking through the HTTP API at once, against gunicorn + Celery
workers (one per queue) + PostgreSQL + Redis on 127.0.0.1, for the `classical` backend and a
randomly initialised vit_b SAM (embeddings cached beforehand).

Each annotator is a thread that sends one event about every `1 / rate` seconds (closed loop:
the next click leaves when the answer is back and the think time has passed), clearing its
points every 12 events; a 503 is retried with the same client_event_id, as the real client does.
Each level runs for a bounded time, then the in-flight clicks are drained. Figures per level:
throughput (timesteps/s), p50/p95/p99 latency of the clicks that made a timestep, errors, and
an audit that every acknowledged event is stored exactly once (seq contiguous, no duplicates,
nothing stored that was not acknowledged). Prints ONE JSON line with a "knee" per backend: the
first level whose p95 exceeds 3x the lowest level's p95 or whose throughput falls below 80% of
the offered click rate.

vit_b runs twice (`--batching both`, the default) on an `interactive` worker with a threads
pool (`-P threads -c --interactive-concurrency`): without micro-batching
(INTERVENE_MICROBATCH=0, one `SamBackend.predict` per click) as `vit_b`, and with it
(workers/batching.py) as `vit_b_batched`; `--batching off` runs vit_b once on the prefork
worker (one click at a time per process), as before.

    .venv/bin/python bench/load_annotators.py [--annotators 40] [--duration 20]
    .venv/bin/python bench/load_annotators.py --annotators 5,10,20,40 --backends classical
    .venv/bin/python bench/load_annotators.py --quick   # short levels, vit_b with and without batching

In --quick mode compare latencies only: with 6 s levels each annotator's first click (green
alone, no timestep) and the spread start keep throughput under 80% of the offered rate, so the
knee is always the first level.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.click_latency import CHECKPOINT, PROTOCOL  # noqa: E402
from tests.live_stack import Annotator, LiveStack, random_sam_vit_b_checkpoint, services_missing  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else None


class SimulatedAnnotator(threading.Thread):
    def __init__(
        self, annotator: Annotator, rate: float, stop_at: float, seed: int, drain_s: float
    ) -> None:
        super().__init__(daemon=True)
        self.a = annotator
        self.rate = rate
        self.stop_at = stop_at
        self.drain_s = drain_s
        self.rng = random.Random(seed)
        self.latencies: list[float] = []  # clicks that made a timestep, first try to answer
        self.acknowledged: set[str] = set()
        self.timesteps = 0
        self.errors_503 = 0
        self.errors_other: list[str] = []
        self.events = 0

    def next_body(self, aid: int) -> dict:
        if self.events % 12 == 0 and self.events:
            return self.a.body(aid, "clear")
        mode = "green" if self.events % 12 in (0, 1, 4, 7, 10) else "red"
        return self.a.body(
            aid,
            "add",
            mode,
            self.rng.randrange(self.a.width),
            self.rng.randrange(self.a.height),
            cid=uuid.uuid4().hex,
        )

    def run(self) -> None:
        aid = self.a.assignments[0]
        time.sleep(self.rng.random() / self.rate)  # spread the first clicks
        while time.monotonic() < self.stop_at:
            body = self.next_body(aid)
            started = time.perf_counter()
            deadline = self.stop_at + self.drain_s
            while True:  # retry the same event (same client_event_id) until it is stored
                try:
                    response = self.a.post(f"assignments/{aid}/events", body)
                    code = response.status_code
                except Exception as exc:  # the client timed out: retry, the server deduplicates
                    code, response = type(exc).__name__, None
                if code == 200:
                    break
                if code == 503:
                    self.errors_503 += 1
                else:
                    self.errors_other.append(
                        f"{code}: {response.text[:200] if response is not None else ''}"
                    )
                    if code != "ReadTimeout":
                        return
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
            elapsed = (time.perf_counter() - started) * 1000.0
            answer = response.json()
            self.a.seq[aid] = body["seq"] + 1
            self.events += 1
            self.acknowledged.add(body["client_event_id"])
            if answer["timestep"] is not None:
                self.timesteps += 1
                self.latencies.append(elapsed)
            think = 1.0 / self.rate - elapsed / 1000.0
            if think > 0:
                time.sleep(think * self.rng.uniform(0.8, 1.2))


def run_level(
    stack: LiveStack, first: int, n: int, duration: float, rate: float, seed: int
) -> dict:
    annotators = [stack.annotator(i) for i in range(first, first + n)]
    stop_at = time.monotonic() + duration
    sims = [
        SimulatedAnnotator(a, rate, stop_at, seed + i, drain_s=stack.interactive_timeout_s * 2)
        for i, a in enumerate(annotators)
    ]
    started = time.monotonic()
    for s in sims:
        s.start()
    with tqdm(total=int(duration), desc=f"{n} annotators", file=sys.stderr, leave=False) as bar:
        while time.monotonic() < stop_at:
            time.sleep(1)
            bar.update(1)
    for s in sims:
        s.join(timeout=stack.interactive_timeout_s * 3 + 30)
    wall = time.monotonic() - started
    latencies = [x for s in sims for x in s.latencies]
    acknowledged = set().union(*(s.acknowledged for s in sims))
    ids = [aid for a in annotators for aid in a.assignments]
    stored = {
        row[0]
        for row in stack.sql(
            "SELECT client_event_id FROM studies_promptevent WHERE assignment_id = ANY(%s)", (ids,)
        )
    }
    stored_count = stack.sql(
        "SELECT count(*) FROM studies_promptevent WHERE assignment_id = ANY(%s)", (ids,)
    )[0][0]
    audit = stack.audit()
    timesteps = sum(s.timesteps for s in sims)
    offered = n * rate * (10 / 12)  # 10 of every 12 events make a timestep once points exist
    return {
        "annotators": n,
        "wall_s": round(wall, 1),
        "events": sum(s.events for s in sims),
        "timesteps": timesteps,
        "throughput_timesteps_per_s": round(timesteps / duration, 2),
        "offered_timesteps_per_s": round(offered, 2),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "errors_503_retried": sum(s.errors_503 for s in sims),
        "errors_other": sum(len(s.errors_other) for s in sims),
        "error_samples": [e for s in sims for e in s.errors_other][:3],
        "stuck_annotators": sum(s.is_alive() for s in sims),
        "audit_ok": not audit["problems"]
        and stored == acknowledged
        and stored_count == len(acknowledged),
        "audit_problems": audit["problems"][:3]
        + (
            []
            if stored == acknowledged
            else [
                f"{len(stored - acknowledged)} stored unacknowledged, {len(acknowledged - stored)} acknowledged not stored"
            ]
        ),
    }


def knee(levels: list[dict]) -> int | None:
    """The first level that is saturated: p95 > 3x the lightest level's, or throughput < 80% of offered."""
    base = levels[0]["p95_ms"] or 0.0
    for level in levels:
        if (
            level["p95_ms"] is None
            or level["p95_ms"] > 3 * base
            or level["throughput_timesteps_per_s"] < 0.8 * level["offered_timesteps_per_s"]
        ):
            return level["annotators"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--annotators", default="40", help="one level or a comma-separated sweep, e.g. 5,10,20,40"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--rate", type=float, default=1.0, help="clicks per second per annotator")
    parser.add_argument("--backends", default="classical,vit_b")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=24)
    parser.add_argument(
        "--interactive-workers",
        type=int,
        default=1,
        help="Celery worker processes on the interactive queue (scale-out)",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads per Celery worker process (default: all cores)",
    )
    parser.add_argument(
        "--batching",
        choices=("both", "off"),
        default="both",
        help="vit_b with and without micro-batching on a threads-pool worker, or prefork only",
    )
    parser.add_argument(
        "--interactive-concurrency",
        type=int,
        default=4,
        help="threads of the interactive worker's pool when comparing batching",
    )
    parser.add_argument(
        "--quick", action="store_true", help="levels 2,4,8 of 6 s each, vit_b only (batching)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.annotators, args.duration, args.backends = "2,4,8", 6.0, "vit_b"
    reason = services_missing()
    if reason:
        raise SystemExit(f"load_annotators needs the real services: {reason}")
    levels = [int(n) for n in args.annotators.split(",")]
    result: dict = {
        "bench": "load_annotators",
        "duration_s": args.duration,
        "rate_hz": args.rate,
        "web": f"gunicorn {args.web_workers}x{args.web_threads} threads",
        "interactive_workers": args.interactive_workers,
        "worker_threads": args.worker_threads,
        "backends": {},
    }
    runs = []  # (name in the JSON, backend, interactive pool, worker environment)
    for backend in args.backends.split(","):
        if backend == "vit_b" and args.batching == "both":
            pool = ("threads", args.interactive_concurrency)
            runs.append(("vit_b", backend, pool, {"INTERVENE_MICROBATCH": "0"}))
            runs.append(("vit_b_batched", backend, pool, {"INTERVENE_MICROBATCH": "1"}))
        else:
            runs.append((backend, backend, ("prefork", 1), {}))
    if args.batching == "both":
        result["interactive_pool"] = f"threads x{args.interactive_concurrency}"
    for name, backend, pool, worker_env in runs:
        checkpoint = random_sam_vit_b_checkpoint(CHECKPOINT, seed=0) if backend == "vit_b" else None
        with LiveStack(
            participants=sum(levels) + 1, images=4, backend="sam" if backend == "vit_b" else "classical", sam_checkpoint=checkpoint,
            protocol=PROTOCOL, consented=True, embed=True, web_workers=args.web_workers, web_threads=args.web_threads,
            queues=("interactive",) * args.interactive_workers + ("batch",),
            worker_threads=args.worker_threads, interactive_pool=pool, worker_env=worker_env,
        ) as stack:  # fmt: skip
            warm = stack.annotator(
                sum(levels)
            )  # loads the model in the interactive worker before timing
            aid = warm.assignments[0]
            for mode, x, y in (("green", 10, 10), ("red", 100, 100)):
                response = warm.send(aid, warm.body(aid, "add", mode, x, y))
                if response.status_code != 200:
                    raise RuntimeError(
                        f"warm-up click answered {response.status_code}: {response.text[:300]}"
                    )
            out, first = [], 0
            for n in levels:
                out.append(run_level(stack, first, n, args.duration, args.rate, args.seed))
                first += n
            batched = stack.worker("interactive").text().count("SAM micro-batching on")
        at_knee = knee(out)
        result["backends"][name] = {
            "levels": out,
            "knee_annotators": at_knee,
            "max_throughput_timesteps_per_s": max(x["throughput_timesteps_per_s"] for x in out),
            "throughput_at_knee": next(
                (x["throughput_timesteps_per_s"] for x in out if x["annotators"] == at_knee), None
            ),
            "pool": f"{pool[0]} x{pool[1]}",
            "micro_batching": bool(batched),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
