"""Exports of a seeded study with scripted sessions: every file's name, dtype and shape."""

import csv
import hashlib
import io
import json
import zipfile

import cv2
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from interventions.metrics import rle_decode
from studies.core.exports import run_export
from studies.core.safe_npy import load_npy
from studies.models import Assignment, Job, PromptEvent
from tests.export_sessions import run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = prompting_study(n_images=4, participants=2)
    study.participants.filter(number=2).update(prolific_pid="PROLIFIC-SECRET")
    run_sessions(study)
    return study


def npy(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """Read as the public PointPrompt scripts do (np.load with allow_pickle)."""
    data = zf.read(name)
    array = np.load(io.BytesIO(data), allow_pickle=True)
    return array


def timesteps(assignment: Assignment) -> list[PromptEvent]:
    return list(assignment.events.filter(timestep__isnull=False).order_by("seq"))


def test_pointprompt_layout_dtypes_and_values(study, tmp_path):
    out = tmp_path / "pp.zip"
    seen = []
    head = run_export(
        study, "pointprompt", out, progress=lambda done, total: seen.append((done, total))
    )
    name = study.dataset.name
    zf = zipfile.ZipFile(out)
    names = set(zf.namelist())
    n = study.dataset.images.count()
    assert seen[-1] == (2 * n, 2 * n) and head["counts"]["participant_images"] == 2 * n

    samples = npy(zf, f"Image datasets/{name}/samples.npy")
    labels = npy(zf, f"Image datasets/{name}/labels.npy")
    assert (
        samples.dtype == object
        and samples.shape == (n,)
        and labels.dtype == object
        and labels.shape == (n,)
    )
    for image in study.dataset.images.order_by("index"):
        i = image.index
        assert samples[i].dtype == np.uint8 and samples[i].shape == (image.height, image.width, 3)
        assert labels[i].dtype == np.uint8 and labels[i].shape == (image.height, image.width)
        assert set(np.unique(labels[i]).tolist()) <= {0, 1}
        gt = cv2.imread(image.mask.path, cv2.IMREAD_GRAYSCALE) > 127
        assert np.array_equal(labels[i].astype(bool), gt)
        sample = npy(zf, f"finetune/samples/{name}/{i}_sample.npy")
        assert sample.dtype == np.uint8 and np.array_equal(sample, samples[i])
        assert np.array_equal(npy(zf, f"finetune/labels/{name}/{i}_label.npy"), labels[i])

    total_timesteps = 0
    for participant in study.participants.order_by("number"):
        base = f"Prompting results/{name}/{participant.code}"
        by_index = {a.image.index: a for a in participant.assignments.select_related("image")}
        for i in range(n):  # contiguous: every index has files, empty when never scored
            steps = timesteps(by_index[i]) if i in by_index else []
            T = len(steps)
            total_timesteps += T
            green = npy(zf, f"{base}/points/{i}_green.npy")
            red = npy(zf, f"{base}/points/{i}_red.npy")
            scores = npy(zf, f"{base}/scores/{i}score.npy")
            sorts = npy(zf, f"{base}/sorts/{i}_sort.npy")
            rounds = npy(zf, f"{base}/eachround/{i}_.npy")
            assert green.dtype == object and green.shape == (T,) and red.shape == (T,)
            assert scores.dtype == np.float64 and scores.shape == (T,)
            assert (
                sorts.dtype == np.int64
                and rounds.dtype == np.int64
                and sorts.shape == rounds.shape == (T,)
            )
            assert np.array_equal(sorts, np.argsort(-scores, kind="stable"))
            for t, event in enumerate(steps):
                assert green[t].dtype == np.int64 and green[t].shape == (len(event.green), 2)
                assert red[t].shape == (len(event.red), 2)
                assert np.array_equal(
                    green[t], np.floor(np.asarray(event.green, float).reshape(-1, 2))
                )
                assert np.array_equal(red[t], np.floor(np.asarray(event.red, float).reshape(-1, 2)))
                assert scores[t] == event.iou and rounds[t] == event.round - 1
                png = cv2.imdecode(
                    np.frombuffer(zf.read(f"{base}/masks/{i}_{t}_mask.png"), np.uint8),
                    cv2.IMREAD_UNCHANGED,
                )
                assert png.dtype == np.uint8 and set(np.unique(png).tolist()) <= {0, 255}
                assert np.array_equal(png > 0, rle_decode(event.mask_rle))
            assert f"{base}/masks/{i}_{T}_mask.png" not in names
            if T:
                best = steps[int(np.argsort(-scores, kind="stable")[0])]
                human = npy(zf, f"finetune/human/{name}/{participant.code}_{i}_green.npy")
                assert human.dtype == np.int64 and np.array_equal(
                    human, np.floor(np.asarray(best.green, float))
                )
                assert f"finetune/human/{name}/{participant.code}_{i}_red.npy" in names
            else:
                assert f"finetune/human/{name}/{participant.code}_{i}_green.npy" not in names
    assert total_timesteps == head["counts"]["timesteps"] > 20
    assert any(r == 1 for r in PromptEvent.objects.values_list("round", flat=True))
    assert PromptEvent.objects.filter(
        round=2, timestep__isnull=False
    ).exists()  # stagnation reached round 2

    # the safe loader reads every object array too
    zf.extractall(tmp_path / "x")
    assert load_npy(tmp_path / "x" / f"Image datasets/{name}/samples.npy").shape == (n,)
    check_manifest(zf, study, "pointprompt")


def check_manifest(zf: zipfile.ZipFile, study, fmt: str) -> dict:
    assert zf.namelist()[-1] == "manifest.json"
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == fmt and manifest["study"]["id"] == study.pk
    assert manifest["protocol"]["stagnation_limit"] == 10 and "mask_choice" in manifest["protocol"]
    assert manifest["models"][0]["model_id"] == study.model.model_id
    assert manifest["code_version"] and "floor" in manifest["coordinates"]["pointprompt_points"]
    files = manifest["files"]
    assert set(files) == set(zf.namelist()) - {"manifest.json"}
    for name, entry in files.items():
        data = zf.read(name)
        assert (
            hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        ), name
    assert manifest["counts"]["files"] == len(files)
    return manifest


def read_csv(zf, name):
    return list(csv.DictReader(io.StringIO(zf.read(name).decode())))


def test_tidy_tables(study, tmp_path):
    out = tmp_path / "tidy.zip"
    run_export(study, "tidy", out)
    zf = zipfile.ZipFile(out)
    events = read_csv(zf, "events.csv")
    assert len(events) == PromptEvent.objects.count()
    first = PromptEvent.objects.order_by("assignment_id", "seq").first()
    assert float(events[0]["x"]) == first.x  # exact float coordinates
    steps = read_csv(zf, "timesteps.csv")
    assert len(steps) == PromptEvent.objects.filter(timestep__isnull=False).count()
    assert {"prompt_coverage", "inclusion_efficiency", "max_spread"} <= set(steps[0])
    assert all(
        0 <= float(row["inclusion_efficiency"]) <= 1 for row in steps if row["inclusion_efficiency"]
    )
    masks = [json.loads(line) for line in zf.read("masks.jsonl").decode().splitlines()]
    assert len(masks) == len(steps)
    event = PromptEvent.objects.get(
        assignment_id=masks[3]["assignment_id"], timestep=masks[3]["timestep"]
    )
    assert np.array_equal(rle_decode(masks[3]["rle"]), rle_decode(event.mask_rle))
    assignments = read_csv(zf, "assignments.csv")
    assert len(assignments) == Assignment.objects.count()
    stag = [a for a in assignments if a["stop_reason"] == "stagnation"]
    assert stag and all(a["overprompted"] == "False" for a in stag)
    participants = zf.read("participants.csv").decode()
    assert "PROLIFIC-SECRET" not in participants and "token" not in participants.splitlines()[0]
    assert len(read_csv(zf, "participants.csv")) == 2
    assert read_csv(zf, "trials.csv") == []
    check_manifest(zf, study, "tidy")


def test_coco_final_and_best(study, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "coco.zip"
    run_export(study, "coco", out)
    zf = zipfile.ZipFile(out)
    (tmp_path / "ann.json").write_bytes(zf.read("annotations.json"))
    coco = COCO(str(tmp_path / "ann.json"))
    scored = [a for a in Assignment.objects.all() if timesteps(a)]
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 2 * len(scored)
    for assignment in scored:
        steps = timesteps(assignment)
        mine = {a["kind"]: a for a in anns if a["assignment_id"] == assignment.pk}
        best = max(steps, key=lambda e: (e.iou, -e.timestep))
        assert (
            mine["final"]["timestep"] == steps[-1].timestep
            and mine["best"]["timestep"] == best.timestep
        )
        assert np.array_equal(coco.annToMask(mine["best"]).astype(bool), rle_decode(best.mask_rle))
        assert mine["best"]["image_id"] == assignment.image.index
    check_manifest(zf, study, "coco")


def test_export_job_task_progress_and_errors(study, tmp_path):
    from workers.export_tasks import export_study

    job = Job.objects.create(study=study, kind="export", params={"format": "coco"})
    export_study.delay(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.progress == 1.0 and job.file.name.endswith(".zip")
    assert zipfile.ZipFile(job.file.path).namelist()[-1] == "manifest.json"
    with pytest.raises(ValueError, match="unknown export format"):
        run_export(study, "xlsx", tmp_path / "bad.zip")
    with pytest.raises(CommandError, match="no study with id 999"):
        call_command("export_study", "999", "--format", "tidy", "--out", str(tmp_path / "x.zip"))
    call_command(
        "export_study",
        str(study.pk),
        "--format",
        "tidy",
        "--out",
        str(tmp_path / "cli.zip"),
        "--no-progress",
    )
    assert zipfile.ZipFile(tmp_path / "cli.zip").testzip() is None


def test_archive_with_more_entries_than_zip32_allows(tmp_path):
    """The spooled central directory still writes zip64 end records past 65,535 entries."""
    from studies.core.exports.archive import ExportArchive

    archive = ExportArchive(tmp_path / "many.zip", compresslevel=1)
    for i in range(66_000):
        archive.write_bytes(f"d/{i}.txt", str(i).encode())
    assert sum(1 for _ in archive.files()) == 66_000
    archive.close()
    zf = zipfile.ZipFile(tmp_path / "many.zip")
    assert (
        len(zf.namelist()) == 66_000 and zf.read("d/65999.txt") == b"65999" and zf.testzip() is None
    )
