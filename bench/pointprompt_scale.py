"""A PointPrompt-size prompting study in the database: the shape of the released data set
(about 200,000 timesteps on 6,000 images, each image prompted by a few of the annotators), made
of the rows the real API writes (docs/architecture.md "Scale").

For `--timesteps N`: N / 33 images (128 x 128 generated scenes), annotators_per_image 3 and
max(3, N / 4,200) participants, each assigned an equal share of the images (so most
participant x image cells are empty, as in PointPrompt: 94% at 200,000). Every participant
consents and works through their images; each image gets a few add / remove events and about
11 timesteps in one or two rounds, the way the event service stores them: seq, client event id,
the point lists, the mask's COCO RLE and its exact IoU against the ground truth (masks are the
ground truth grown or shrunk, so scores are real), the answer sent (`response`), server and
client times, round, stagnation counter, the finishing event with its stop reason, and the
assignment's status, times, survey answer and protocol state.

    .venv/bin/python bench/pointprompt_scale.py --timesteps 200000 [--seed 0]

writes into the database of DATABASE_URL (a new study each run) and prints one JSON line with
the study id, the counts and the seconds it took. `generate_study(...)` is the same, for the
benchmarks and a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMESTEPS_PER_IMAGE = 33  # PointPrompt: ~200,000 timesteps / 6,000 images
ANNOTATORS_PER_IMAGE = 3
BATCH = 5000


def shape_for(timesteps: int) -> dict:
    images = max(4, round(timesteps / TIMESTEPS_PER_IMAGE))
    participants = max(3, round(timesteps / 4200))
    per = max(1, math.ceil(images * ANNOTATORS_PER_IMAGE / participants))
    return {"images": images, "participants": participants, "images_per_participant": per}


def _masks(gt, rng, k: int = 8):
    """k masks around the ground truth (grown or shrunk by a few pixels, shifted): (rle, iou)."""
    import numpy as np
    from scipy import ndimage

    from interventions.metrics import iou, rle_encode

    out = []
    for j in range(k):
        step = int(rng.integers(-3, 4))
        m = ndimage.binary_dilation(gt, iterations=step) if step > 0 else gt
        if step < 0:
            m = ndimage.binary_erosion(gt, iterations=-step)
        dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
        m = np.roll(np.roll(m, dy, 0), dx, 1)
        if j == 0:
            m = gt.copy()  # one near-perfect mask per image
            m[:2, :] = False
        out.append((rle_encode(m), float(iou(m, gt))))
    return out


def generate_study(timesteps: int, seed: int = 0, title: str | None = None, progress=None):
    """Create the study (and its data set, model, researcher); return (study, counts)."""
    import numpy as np
    from django.db import transaction
    from django.utils import timezone

    from interventions.demo_data import generate_scene
    from studies.core.datasets import create_dataset
    from studies.core.enrolment import enrol_participant, record_consent
    from studies.models import Assignment, ModelSpec, PromptEvent, Study
    from tests.factories import researcher

    shape = shape_for(timesteps)
    rng = np.random.default_rng(seed)
    tag = uuid.uuid4().hex[:6]
    scenes = (generate_scene("Clean shapes", i, seed=seed) for i in range(shape["images"]))
    gts = []

    def items():
        for s in scenes:
            gts.append(s.mask.astype(bool))
            yield (s.image, s.mask, s.label, s.class_name)

    dataset = create_dataset(f"PointPrompt-size {tag}", items(), source="generated", seed=seed)
    spec, _ = ModelSpec.objects.get_or_create(
        name="classical (scale)", defaults={"kind": "classical", "architecture": "classical-v1"}
    )
    study = Study.objects.create(
        title=title or f"PointPrompt-size study ({timesteps} timesteps)",
        dataset=dataset,
        model=spec,
        owner=researcher("scale"),
        status="open",
        annotators_per_image=ANNOTATORS_PER_IMAGE,
        images_per_participant=shape["images_per_participant"],
        assignment_seed=seed,
    )
    image_ids = list(dataset.images.order_by("index").values_list("pk", flat=True))
    masks = {pk: _masks(gts[i], rng) for i, pk in enumerate(image_ids)}
    people = []
    for _ in range(shape["participants"]):
        people.append(record_consent(enrol_participant(study), study.consent_version))
    assignments = list(
        Assignment.objects.real().filter(participant__study=study).order_by("participant", "order")
    )
    per_assignment = timesteps / max(1, len(assignments))
    t0 = timezone.now() - timedelta(days=30)
    events, n_events, n_timesteps, done = [], 0, 0, 0
    clock = t0

    def flush():
        nonlocal events
        if events:
            PromptEvent.objects.bulk_create(events, batch_size=BATCH)
            events = []

    def event(pk, state, action, mode="", x=None, y=None, **fields):
        nonlocal clock, n_events
        clock += timedelta(milliseconds=int(rng.integers(800, 4000)))
        events.append(
            PromptEvent(
                assignment_id=pk, seq=state["seq"], client_event_id=uuid.uuid4().hex,
                action=action, mode=mode, x=x, y=y,
                client_ts=clock.timestamp() * 1000.0 - 40.0, server_ts=clock,
                round=state["round"], green=[list(p) for p in state["green"]],
                red=[list(p) for p in state["red"]], stagnation=state["stagnation"],
                **fields,
            )
        )  # fmt: skip
        state["seq"] += 1
        n_events += 1

    with transaction.atomic():
        for a in assignments:
            options = masks[a.image_id]
            # timesteps of this image: around the mean, so the total comes out near N
            want = max(1, int(rng.poisson(per_assignment)))
            pk = a.pk
            state = {"round": 1, "green": [], "red": [], "stagnation": 1, "seq": 0}
            green, red = state["green"], state["red"]
            best, t = -1.0, 0
            a_start = clock

            px = lambda: [float(rng.integers(0, 128)), float(rng.integers(0, 128))]  # noqa: E731
            green.append(px())
            event(pk, state, "add", "green", *green[-1])
            stop = ""
            while t < want:
                mode = "red" if (t == 0 or rng.random() < 0.45) else "green"
                (red if mode == "red" else green).append(px())
                rle, score = options[int(rng.integers(len(options)))]
                improved = score > best
                best = max(best, score)
                state["stagnation"] = 1 if improved else state["stagnation"] + 1
                round_ended = state["stagnation"] > 10 and state["round"] == 1
                response = {"timestep": t, "round": state["round"], "iou": score,
                            "mask_rle": rle, "green": [list(p) for p in green],
                            "red": [list(p) for p in red], "stagnation": state["stagnation"],
                            "round_ended": round_ended, "finished": False}  # fmt: skip
                event(
                    pk, state, "add", mode, *(red if mode == "red" else green)[-1],
                    timestep=t, mask_rle=rle, iou=score, predicted_iou=min(1.0, score + 0.03),
                    mask_index=0, model_id="classical-v1", latency_ms=float(rng.uniform(20, 90)),
                    round_ended=round_ended, response=response,
                )  # fmt: skip
                t += 1
                if round_ended:
                    green, red = [], []
                    state.update(round=2, stagnation=1, green=green, red=red)
                if rng.random() < 0.05 and len(red) > 1:
                    removed = red.pop()
                    event(pk, state, "remove", "red", *removed)
            n_timesteps += t
            finished = rng.random() < 0.93
            if finished:
                stop = "finished"
                event(pk, state, "finish", finished=True, stop_reason=stop)
            a.status = "finished" if finished else "active"
            a.stop_reason = stop
            a.started_at = a_start
            a.finished_at = clock if finished else None
            a.next_seq = state["seq"]
            a.survey_answers = {"answer": "no", "text": ""} if finished else None
            a.state = {"round": state["round"], "green": green, "red": red, "timesteps": t,
                       "round_best": best, "counter": state["stagnation"], "finished": finished,
                       "stop_reason": stop, "history": [], "future": []}  # fmt: skip
            if len(events) >= BATCH:
                flush()
            done += 1
            if progress:
                progress(done, len(assignments))
        flush()
        Assignment.objects.bulk_update(
            assignments,
            ["status", "stop_reason", "started_at", "finished_at", "next_seq", "survey_answers", "state"],
            batch_size=BATCH,
        )  # fmt: skip
        for p in people:
            if not p.assignments.real().exclude(status="finished").exists():
                p.completed_at = clock
                p.save(update_fields=["completed_at"])
    counts = {
        **shape,
        "assignments": len(assignments),
        "events": n_events,
        "timesteps": n_timesteps,
        "cells": shape["participants"] * shape["images"],
    }
    return study, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=200000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from tqdm import tqdm

    started = time.perf_counter()
    bar = tqdm(total=None, desc="assignments", unit="assignment", file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.update(1)

    study, counts = generate_study(args.timesteps, args.seed, progress=progress)
    bar.close()
    print(json.dumps({"bench": "pointprompt_scale", "study": study.pk, **counts,
                      "seconds": round(time.perf_counter() - started, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
