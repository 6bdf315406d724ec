"""Object storage against the local file system, same study, same process (docs/deploy.md
"Object storage").

An S3-compatible server (moto's standalone server, on loopback, in this process: its CPU time
counts against the S3 side) and a generated prompting study (SQLite in a temp dir; a classical
model; `BENCH_PARTICIPANTS` x `BENCH_IMAGES` assignments of `BENCH_TIMESTEPS` timesteps each).
Measured for each backend:

- each export format (the worker's path: staging file, upload; then the researcher's streamed
  download): seconds, MB/s of zip, the process's peak RSS above its level before the export;
- a click (`predict_mask`, the interactive task, in process): cold (the worker's local copy
  folders and memory caches empty: image, mask and embedding come from the store) and warm
  (the same click again), median of `BENCH_CLICKS` images, in ms.

One JSON line; `ratio` fields are S3 / local.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(tempfile.mkdtemp(prefix="intervene-bench-storage-"))
os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'bench.sqlite3'}"
os.environ["MEDIA_ROOT"] = str(TMP / "media")
os.environ["EMBEDDING_CACHE_DIR"] = str(TMP / "embeddings")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.pop("STORAGE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402
from tqdm import tqdm  # noqa: E402

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", 30))
IMAGES = int(os.environ.get("BENCH_IMAGES", 24))
TIMESTEPS = int(os.environ.get("BENCH_TIMESTEPS", 8))
CLICKS = int(os.environ.get("BENCH_CLICKS", 8))
FORMATS = ("pointprompt", "tidy", "coco")
BUCKET = "intervene-bench"


class PeakRss:
    """The process's peak RSS above its starting level, sampled every 5 ms."""

    def __enter__(self):
        self.process = psutil.Process()
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def mb(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def build_study():
    from interventions.metrics import rle_encode
    from studies.models import Assignment, PromptEvent
    from tests.factories import prompting_study

    study = prompting_study(n_images=IMAGES, participants=PARTICIPANTS, status="closed")
    rng = np.random.default_rng(0)
    size = study.dataset.images.first()
    now = timezone.now()
    events = []
    for assignment in tqdm(
        Assignment.objects.filter(participant__study=study),
        desc="study",
        unit="asg",
        file=sys.stderr,
    ):
        mask = np.zeros((size.height, size.width), bool)
        green, red = [], []
        for t in range(TIMESTEPS):
            x, y = int(rng.integers(size.width)), int(rng.integers(size.height))
            (green if t % 2 == 0 else red).append([float(x), float(y)])
            mask[max(0, y - 6) : y + 6, max(0, x - 6) : x + 6] = True
            events.append(
                PromptEvent(
                    assignment=assignment, seq=t, client_event_id=f"e{assignment.pk}-{t}",
                    action="add", mode="green", server_ts=now, timestep=t, round=1,
                    green=list(green), red=list(red), mask_rle=rle_encode(mask),
                    iou=float(rng.random()), model_id="classical-v1",
                )
            )  # fmt: skip
        assignment.status = "finished"
        assignment.stop_reason = "finished"
        assignment.save(update_fields=["status", "stop_reason"])
    PromptEvent.objects.bulk_create(events, batch_size=2000)
    return study, len(events)


def export_round(study, label: str) -> dict:
    """Each format as the export task writes it (staging + store), then downloaded."""
    from studies.core import storage
    from studies.core.exports import run_export

    out = {}
    for fmt in FORMATS:
        name = f"exports/bench_{label}_{fmt}.zip"
        with PeakRss() as rss:
            started = time.perf_counter()
            staged = storage.staging_path("media", name)
            run_export(study, fmt, staged)
            storage.put_file("media", name, staged)
            written = time.perf_counter() - started
            downloaded = sum(len(c) for c in storage.iter_chunks("media", name))
            total = time.perf_counter() - started
        out[fmt] = {
            "write_s": round(written, 3),
            "write_and_download_s": round(total, 3),
            "zip_mb": round(downloaded / 2**20, 2),
            "mb_per_s": round(downloaded / 2**20 / total, 2),
            "peak_rss_mb": rss.mb,
        }
    return out


def click_round(study) -> dict:
    """Cold and warm click latency over CLICKS images (median ms)."""
    from django.conf import settings

    from workers import model_cache
    from workers.tasks import image_embedding, predict_mask

    images = list(study.dataset.images.order_by("index")[:CLICKS])
    # fill the store (or the shared folder) with every embedding, as a precompute would
    for image in images:
        image_embedding(study.model, image.pk)
    cold, warm = [], []
    for image in images:
        model_cache.clear()
        if settings.OBJECT_STORAGE:  # a fresh worker host: its copy folders empty
            for folder in (settings.MEDIA_ROOT, settings.EMBEDDING_CACHE_DIR):
                shutil.rmtree(folder, ignore_errors=True)
        point = [[image.width / 2, image.height / 2]]
        for bucket in (cold, warm):
            started = time.perf_counter()
            predict_mask.run(study.model.pk, image.pk, point, [[1.0, 1.0]])
            bucket.append((time.perf_counter() - started) * 1000)
    return {
        "cold_ms": round(statistics.median(cold), 2),
        "warm_ms": round(statistics.median(warm), 2),
    }


def upload_media(client, prefix: str) -> None:
    media = Path(os.environ["MEDIA_ROOT"])
    for path in media.rglob("*"):
        if path.is_file() and "exports" not in path.parts:
            client.upload_file(str(path), BUCKET, f"{prefix}/media/{path.relative_to(media)}")


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from config.storage_url import parse_storage, s3_storages
    from tests.live_stack import free_port

    call_command("migrate", verbosity=0)
    study, timesteps = build_study()
    local = {"exports": export_round(study, "local"), "click": click_round(study)}

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    upload_media(client, "bench")  # the same study's files, now in the store
    parsed = parse_storage({"STORAGE_URL": f"s3://{BUCKET}/bench?endpoint_url={endpoint}"})
    from django.conf import settings

    stores = {**settings.STORAGES, **s3_storages(parsed)}
    with override_settings(
        OBJECT_STORAGE=parsed,
        STORAGES=stores,
        MEDIA_ROOT=TMP / "worker-media",
        EMBEDDING_CACHE_DIR=TMP / "worker-embeddings",
    ):
        remote = {"exports": export_round(study, "s3"), "click": click_round(study)}
    server.stop()

    result = {
        "bench": "storage",
        "timesteps": timesteps,
        "images": IMAGES,
        "local": local,
        "s3": remote,
        "ratio": {
            **{
                f"{fmt}_seconds": round(
                    remote["exports"][fmt]["write_and_download_s"]
                    / local["exports"][fmt]["write_and_download_s"],
                    2,
                )
                for fmt in FORMATS
            },
            "click_cold": round(remote["click"]["cold_ms"] / local["click"]["cold_ms"], 2),
            "click_warm": round(remote["click"]["warm_ms"] / local["click"]["warm_ms"], 2),
        },
        "note": "moto's S3 server runs in this process on loopback: its CPU time counts on the S3 side",
    }
    print(json.dumps(result))
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
