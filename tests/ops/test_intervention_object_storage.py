"""An intervention study across machines (issue 23): the web and Celery workers that share
nothing but PostgreSQL, Redis and an S3-compatible store (moto's standalone server on loopback).

The researcher opens the study through the web, which starts the per-image analyses
(explanation maps, VOICE, causal curves) on the `batch` worker; a participant consents and posts
trials through the participant API (the classifier on the `interactive` worker, the overlay map
served by the web from the store); the researcher exports `tidy` through the API. Each worker's
MEDIA_ROOT and embedding cache are empty folders of its own (the batch and the interactive worker
do not share theirs either), the web's are others: the workers read every image from the store,
the maps and the export go to it, and the web writes nothing locally. The same database exported
on the local file system (the bucket's files copied to a folder, STORAGE_URL unset) gives a
byte-identical export (the manifest's export time aside).
Skipped, with the reason, when PostgreSQL or Redis is missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from interventions.metrics import rle_encode
from tests.live_stack import LiveStack
from tests.ops.test_object_storage import (  # noqa: F401  (s3: a fixture)
    BUCKET,
    _strip,
    export,
    files_under,
    members,
    researcher,
    s3,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "lab2"
PROTOCOL = {"overlay": "gradcam", "substrate": "zero"}


def own_folders(root: Path) -> dict:
    """A worker's own, empty MEDIA_ROOT and embedding cache: it cannot see the web's files."""
    root.mkdir(parents=True, exist_ok=True)
    return {"MEDIA_ROOT": str(root / "media"), "EMBEDDING_CACHE_DIR": str(root / "embeddings")}


def open_study(stack: LiveStack, session) -> dict:
    """Open the draft study as the researcher does (its page's Open button: the web queues the
    precompute on `batch`) and wait for that job; returns the job row."""
    answer = session.post(
        f"{stack.base_url}/studies/{stack.study['id']}/status",
        data={"action": "open"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:300]
    deadline = time.monotonic() + 300
    while True:
        rows = stack.sql(
            "SELECT status, error, done, total FROM studies_job WHERE study_id = %s AND kind = %s",
            (stack.study["id"], "precompute"),
        )
        assert len(rows) == 1, rows
        status, error, done, total = rows[0]
        if status in ("done", "failed"):
            return {"status": status, "error": error, "done": done, "total": total}
        assert time.monotonic() < deadline, f"precompute not done in 300 s: {rows}"
        time.sleep(0.5)


def participate(stack: LiveStack) -> dict:
    """Consent, then per image: the prediction, the overlay and two trials; finish."""
    annotator = stack.annotator(0)
    me = annotator.get("participants/me").json()
    consent = annotator.post("participants/me/consent", {"version": me["consent_version"]})
    assert consent.status_code == 200, consent.text
    out = {"assignments": me["assignments"], "info": [], "overlays": [], "trials": []}
    for assignment in me["assignments"]:
        aid = assignment["id"]
        info = annotator.get(f"assignments/{aid}/intervention")
        assert info.status_code == 200, info.text
        out["info"].append(info.json())
        overlay = annotator.get(f"assignments/{aid}/overlay.png")
        assert overlay.status_code == 200, overlay.text[:300]
        out["overlays"].append(overlay.content)
        region = np.zeros((assignment["height"], assignment["width"]), bool)
        region[10:40, 12:44] = True
        for seq, operation in enumerate(("delete", "insert")):
            body = {
                "client_event_id": f"{aid}-{seq}",
                "seq": seq,
                "operation": operation,
                "region_rle": rle_encode(region),
                "substrate": "zero",
                "client_ts": 1000.0 * seq,
            }
            answer = annotator.post(f"assignments/{aid}/trials", body)
            assert answer.status_code == 200, answer.text
            out["trials"].append(answer.json())
        assert annotator.post(f"assignments/{aid}/finish", {}).status_code == 200
    return out


@pytest.fixture(scope="module")
def run(s3, tmp_path_factory):  # noqa: F811  (the fixture imported above)
    """The study on the S3 server; then the same database exported on the local file system
    (the bucket's media copied to a folder, STORAGE_URL unset) for the byte comparison."""
    root = tmp_path_factory.mktemp("intervention-storage")
    with LiveStack(
        kind="intervention",
        status="draft",
        participants=1,
        images=2,
        protocol=PROTOCOL,
        queues=("batch",),  # the interactive worker is started below, with folders of its own
        web_workers=1,
        interactive_timeout_s=60.0,
        env=s3.env(PREFIX),
        worker_env=own_folders(root / "batch-worker"),
    ) as stack:
        stack.wait_ready(
            stack.start_worker("interactive", env=own_folders(root / "interactive-worker"))
        )
        session = researcher(stack)
        out = {"job": open_study(stack, session)}
        out["participant"] = participate(stack)
        out["export"] = export(stack, session, "tidy")
        out["web_files"] = files_under(stack.tmp / "media") + files_under(stack.tmp / "embeddings")
        out["batch_files"] = files_under(root / "batch-worker")
        out["interactive_files"] = files_under(root / "interactive-worker")
        out["keys"] = s3.keys(f"{PREFIX}/")
        out["maps"] = [
            row[0] for row in stack.sql("SELECT maps FROM studies_imageanalysis ORDER BY id")
        ]
        out["images"] = [row[0] for row in stack.sql("SELECT image FROM studies_datasetimage")]
        out["trial_rows"] = stack.sql("SELECT count(*) FROM studies_interventiontrial")[0][0]
        local_media = root / "local-media"
        client = s3.client()
        media = f"{PREFIX}/media/"
        for key in out["keys"]:
            if key.startswith(media) and "/exports/" not in key:
                target = local_media / key[len(media) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(BUCKET, key, str(target))
        env = {k: v for k, v in stack.env.items() if k != "STORAGE_URL"}
        env["MEDIA_ROOT"] = str(local_media)
        target = root / "local-tidy.zip"
        stack.manage(
            "export_study", str(stack.study["id"]), "--format", "tidy",
            "--out", str(target), "--no-progress", env=env,
        )  # fmt: skip
        out["local_export"] = target.read_bytes()
    return out


def test_the_maps_are_computed_on_the_worker_and_kept_in_the_store(run):
    job = run["job"]
    assert job["status"] == "done" and job["done"] == job["total"] == 2, job
    assert run["web_files"] == [], "the web wrote files locally with object storage on"
    keys = set(run["keys"])
    assert run["maps"] and all(name for name in run["maps"]), run["maps"]
    assert all(f"{PREFIX}/media/{name}" in keys for name in run["maps"]), run["maps"]
    assert sum(k.startswith(f"{PREFIX}/media/exports/") for k in keys) == 1, keys
    # each worker copied the images it read from the store into its own folder, and holds
    # nothing but copies of stored objects
    for files in (run["batch_files"], run["interactive_files"]):
        assert all(f"media/{name}" in files for name in run["images"]), files
        assert all(f"{PREFIX}/{f}" in keys for f in files), (files, keys)


def test_the_trials_went_through_the_interactive_worker(run):
    participant = run["participant"]
    assert run["trial_rows"] == len(participant["trials"]) == 4
    for trial in participant["trials"]:
        assert 0.0 <= trial["prob_before"] <= 1.0 and 0.0 <= trial["prob_after"] <= 1.0, trial
        assert trial["overlay"] == "gradcam" and trial["area_fraction"] > 0, trial
    assert all(info["overlay"] == "gradcam" and info["top5"] for info in participant["info"])
    assert all(png.startswith(b"\x89PNG") for png in participant["overlays"])


def test_the_export_is_byte_identical_to_the_local_file_system(run):
    a, b = members(run["local_export"]), members(run["export"][1])
    assert sorted(a) == sorted(b)
    assert any(n.endswith("trials.csv") for n in a) and any("interventions/maps/" in n for n in a)
    for name in a:
        if name.endswith("manifest.json"):
            assert _strip(json.loads(a[name])) == _strip(json.loads(b[name])), name
        else:
            assert a[name] == b[name], f"{name} differs"
