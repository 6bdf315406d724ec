"""An intervention study on object storage (issue 23): precomputed explanation maps, a
participant's trials and the tidy export all go through the S3-compatible store (moto's server
on loopback), the worker side reading images from it into an empty local copy folder; the
export equals, byte for byte (the export time aside), the same database exported on the local
file system. This runs in-process (eager Celery, one MEDIA_ROOT emptied in between); the same
study with the web and the workers as separate processes, each with folders of its own, runs in
tests/ops/test_intervention_object_storage.py (the prompting side in
tests/ops/test_object_storage.py)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from django.test.utils import override_settings

from interventions.metrics import rle_encode
from studies.core import storage
from studies.core.exports import run_export
from studies.intervention.precompute import analyses_complete, start_image_analyses
from studies.models import ImageAnalysis, InterventionTrial
from tests.core.test_storage import s3, s3_server  # noqa: F401  (fixtures)
from tests.factories import ParticipantClient
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights
from workers import model_cache

pytestmark = pytest.mark.django_db


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_precompute_trials_and_export_through_the_store(
    s3,  # noqa: F811  (the fixture imported above)
    settings,
    tmp_path,
    client,
    django_capture_on_commit_callbacks,  # noqa: F811
):
    spec = classifier_spec(random_demo_weights(tmp_path))
    study = intervention_study(spec, n_images=2, overlay="gradcam")
    with django_capture_on_commit_callbacks(execute=True):
        job = start_image_analyses(study)
    job.refresh_from_db()
    assert job.status == "done" and analyses_complete(study), job.error
    keys = s3()
    maps = [row.maps.name for row in ImageAnalysis.objects.filter(model=spec)]
    assert maps and all(f"media/{name}" in keys for name in maps)

    # the worker side starts from an empty local copy: every image comes from the store
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    model_cache.clear()
    participant = study.participants.first()
    pc = ParticipantClient(client, participant)
    pc.consent()
    assignment = participant.assignments.select_related("image").order_by("order").first()
    region = np.zeros((assignment.image.height, assignment.image.width), bool)
    region[10:40, 12:44] = True
    body = {
        "client_event_id": "t0",
        "seq": 0,
        "operation": "delete",
        "region_rle": rle_encode(region),
        "substrate": "zero",
    }
    answer = pc.post(f"assignments/{assignment.pk}/trials", body)
    assert answer.status_code == 200, answer.content
    assert InterventionTrial.objects.filter(assignment=assignment).count() == 1
    assert (settings.MEDIA_ROOT / assignment.image.image.name).is_file()  # copied from the store

    staged = storage.staging_path("media", "exports/intervention_tidy.zip")
    run_export(study, "tidy", staged)
    storage.put_file("media", "exports/intervention_tidy.zip", staged)
    remote = tmp_path / "remote.zip"
    remote.write_bytes(b"".join(storage.iter_chunks("media", "exports/intervention_tidy.zip")))

    # the same database on the local file system: the bucket's media copied to a folder
    local_media = tmp_path / "local-media"
    for key in keys + [f"media/{n}" for n in maps]:
        if key.startswith("media/") and "/exports/" not in key:
            target = local_media / key[len("media/") :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(storage.iter_chunks("media", key[len("media/") :])))
    local_stores = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    local_stores.pop("embeddings", None)
    with override_settings(OBJECT_STORAGE=None, STORAGES=local_stores, MEDIA_ROOT=local_media):
        local = tmp_path / "local.zip"
        run_export(study, "tidy", local)
    a, b = members(local), members(remote)
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith("manifest.json"):
            left, right = json.loads(a[name]), json.loads(b[name])
            left.pop("exported_at", None), right.pop("exported_at", None)
            assert left == right
        else:
            assert a[name] == b[name], name
    with zipfile.ZipFile(io.BytesIO(remote.read_bytes())) as archive:
        assert any(n.endswith("trials.csv") for n in archive.namelist())
