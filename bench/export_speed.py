"""Export speed and memory at PointPrompt scale (docs/design.md "Performance").

A study of about 200,000 timesteps (400 images of 32 x 32, 48 annotators = 16 data sets x 3,
10 timesteps per image) is inserted directly (bulk_create, SQLite in a temp dir), then
`export_study --format pointprompt` runs; the same at a tenth of the size (5 annotators) first.
Each export runs as its own `manage.py export_study` process whose RSS is sampled every 10 ms
(wall time includes Django start-up). Prints one JSON line: timesteps/s and peak RSS of both
sizes; `peak_rss_ratio` = large / small peak RSS (1.0 = memory does not grow with the study).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(tempfile.mkdtemp(prefix="intervene-bench-export-"))
os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'bench.sqlite3'}"
os.environ["MEDIA_ROOT"] = str(TMP / "media")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from tqdm import tqdm  # noqa: E402

from interventions.metrics import rle_encode  # noqa: E402

IMAGES = int(os.environ.get("BENCH_IMAGES", 400))
SIZE = 32
TIMESTEPS = 10
LARGE = int(os.environ.get("BENCH_ANNOTATORS", 48))
SMALL = max(1, LARGE // 10)


def run_measured(command: list[str]) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in bytes sampled every 10 ms, children included)."""
    started = time.perf_counter()
    child = psutil.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        try:
            procs = [child, *child.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
    return seconds, peak


def build_study(title: str, annotators: int, dataset, spec, owner):
    from studies.models import Assignment, Participant, PromptEvent, Study

    study = Study.objects.create(
        kind="prompting", title=title, dataset=dataset, model=spec, owner=owner, status="closed"
    )
    Participant.objects.bulk_create(
        Participant(study=study, number=k, code=f"st{k}", token=f"{title}-{k}")
        for k in range(1, annotators + 1)
    )
    images = list(dataset.images.order_by("index").values_list("pk", flat=True))
    participants = list(study.participants.order_by("number").values_list("pk", flat=True))
    Assignment.objects.bulk_create(
        (Assignment(participant_id=p, image_id=im, order=o, status="finished", stop_reason="finished")
         for p in participants for o, im in enumerate(images)),
        batch_size=2000,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    masks = []
    for k in range(16):
        mask = np.zeros((SIZE, SIZE), bool)
        mask[4 + k % 8 : 20 + k % 8, 6 : 18 + k % 12] = True
        masks.append(rle_encode(mask))
    now = timezone.now()
    ids = list(
        Assignment.objects.filter(participant__study=study)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    batch = []
    for assignment_id in tqdm(ids, desc=f"insert {title}", unit="asg", file=sys.stderr):
        green, red = [], []
        for t in range(TIMESTEPS):
            (green if t % 2 == 0 else red).append(
                [float(rng.integers(SIZE)), float(rng.integers(SIZE))]
            )
            if t == 0:
                red.append([0.0, 0.0])
            batch.append(
                PromptEvent(
                    assignment_id=assignment_id, seq=t, client_event_id=f"e{t}", action="add", mode="green",
                    server_ts=now, timestep=t, round=1 + t // 6, green=list(green), red=list(red),
                    mask_rle=masks[(assignment_id + t) % 16], iou=float(rng.random()), model_id="classical-v1",
                )
            )  # fmt: skip
        if len(batch) >= 5000:
            PromptEvent.objects.bulk_create(batch)
            batch = []
    PromptEvent.objects.bulk_create(batch)
    return study, len(ids) * TIMESTEPS


def timed_export(study, timesteps: int) -> dict:
    out = TMP / f"{study.title}.zip"
    command = [
        sys.executable,
        "manage.py",
        "export_study",
        str(study.pk),
        "--format",
        "pointprompt",
        "--out",
        str(out),
        "--no-progress",
    ]
    seconds, peak = run_measured(command)
    return {
        "timesteps": timesteps,
        "seconds": round(seconds, 2),
        "timesteps_per_s": round(timesteps / seconds, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "zip_mb": round(out.stat().st_size / 2**20, 1),
    }


def main() -> None:
    from django.contrib.auth import get_user_model

    from studies.core.datasets import create_dataset
    from studies.models import ModelSpec

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(1)
    items = []
    for _ in range(IMAGES):
        image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), bool)
        mask[8:24, 8:24] = True
        items.append((image, mask, None, ""))
    dataset = create_dataset("Bench scenes", items, source="generated")
    spec = ModelSpec.objects.create(name="classical", kind="classical", architecture="classical-v1")
    owner = get_user_model().objects.create_user("bench")
    small, small_n = build_study("small", SMALL, dataset, spec, owner)
    large, large_n = build_study("large", LARGE, dataset, spec, owner)
    result_small = timed_export(small, small_n)
    result_large = timed_export(large, large_n)
    print(
        json.dumps(
            {
                "bench": "export_speed",
                "format": "pointprompt",
                "image_size": SIZE,
                "small": result_small,
                "large": result_large,
                "size_ratio": round(large_n / small_n, 2),
                "peak_rss_ratio": round(
                    result_large["peak_rss_mb"] / result_small["peak_rss_mb"], 2
                ),
                "throughput_ratio": round(
                    result_large["timesteps_per_s"] / result_small["timesteps_per_s"], 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
