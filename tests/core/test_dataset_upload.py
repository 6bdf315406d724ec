"""Bringing your own data through the web: an archive of image/mask pairs (or a PointPrompt
pair) is streamed to disk, checked pair by pair in a background Job with the same code as the
command-line importers, and ends in a report; refused pairs are named with their reason and
nothing is half-imported."""

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studies.core.importers import import_archive, plan_pairs
from studies.models import Dataset, DatasetImage, Job
from tests.factories import researcher

pytestmark = pytest.mark.django_db


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def mask(shape=(6, 8), box=(1, 3, 2, 5), value=255):
    m = np.zeros(shape, np.uint8)
    m[box[0] : box[1], box[2] : box[3]] = value
    return m


def mixed_archive_files() -> dict[str, bytes]:
    """Two good pairs (0/255 and 0/1 masks), an image with two objects, and one bad pair of
    each kind the report names."""
    rgb = np.full((6, 8, 3), 90, np.uint8)
    return {
        "data/images/a.png": png(rgb),
        "data/masks/a.png": png(mask()),
        "data/images/b.png": png(rgb),
        "data/masks/b_mask.png": png(mask(value=1)),
        "data/images/multi.png": png(rgb),
        "data/masks/multi_1.png": png(mask(box=(0, 2, 0, 2))),
        "data/masks/multi_2.png": png(mask(box=(3, 5, 4, 8))),
        "data/images/wrong_size.png": png(rgb),
        "data/masks/wrong_size.png": png(mask(shape=(7, 8))),
        "data/images/blank.png": png(rgb),
        "data/masks/blank.png": png(np.zeros((6, 8))),
        "data/images/broken.png": b"not a png at all",
        "data/masks/broken.png": png(mask()),
        "data/images/huge.png": png(np.zeros((40, 40, 3))),
        "data/masks/huge.png": png(mask(shape=(40, 40))),
        "data/images/lonely.png": png(rgb),
        "data/masks/stray.png": png(mask()),
        "data/README.txt": b"ignored",
        "__MACOSX/data/images/._a.png": b"ignored",
    }


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


EXPECTED_REFUSALS = {
    "wrong_size": "size mismatch",
    "blank": "empty mask",
    "broken": "unreadable",
    "huge": "over the pixel limit",
    "data/images/lonely.png": "no mask",
    "data/masks/stray.png": "no image",
}


def test_plan_pairs_matches_by_name_and_numbers_objects():
    pairs, orphans = plan_pairs(list(mixed_archive_files()))
    names = [p[0] for p in pairs]
    assert names == ["a", "b", "blank", "broken", "huge", "multi_1", "multi_2", "wrong_size"]
    assert {o[0]: o[1].reason for o in orphans} == {
        "data/images/lonely.png": "no mask",
        "data/masks/stray.png": "no image",
    }


@pytest.mark.parametrize("writer", [write_zip, write_tar])
def test_archive_import_keeps_good_pairs_and_reports_each_refusal(tmp_path, media, writer):
    archive = writer(tmp_path / "upload.bin", mixed_archive_files())
    seen = []
    dataset, report = import_archive(
        archive, "Mixed", max_pixels=1000, progress=lambda d, t: seen.append((d, t))
    )
    result = report.as_dict()
    assert result["accepted"] == 4 and result["refused"] == 6
    assert [r["name"] for r in result["accepted_pairs"]] == ["a", "b", "multi_1", "multi_2"]
    assert {r["name"]: r["reason"] for r in result["refused_pairs"]} == EXPECTED_REFUSALS
    assert seen[-1] == (8, 8)
    rows = list(dataset.images.order_by("index"))
    assert [r.index for r in rows] == [0, 1, 2, 3]
    stored = [np.asarray(Image.open(r.mask.path)) > 0 for r in rows]
    assert np.array_equal(stored[0], mask() > 0) and np.array_equal(stored[1], mask() > 0)
    assert np.array_equal(stored[3], mask(box=(3, 5, 4, 8)) > 0)  # one object per image row
    # files exist only for the accepted pairs: the working copy and the uploaded original
    folder = media / "datasets" / str(dataset.pk)
    assert (
        len(list((folder / "images").glob("*.png"))) + len(list((folder / "masks").glob("*.png")))
        == 8
    )
    assert len(list((folder / "originals").glob("*.png"))) == 8
    assert [r.original_name for r in rows] == ["a.png", "b.png", "multi.png", "multi.png"]
    assert [r.mask_name for r in rows] == ["a.png", "b_mask.png", "multi_1.png", "multi_2.png"]
    assert rows[0].original_image.read() == mixed_archive_files()["data/images/a.png"]


def test_nothing_is_half_imported_when_no_pair_is_good(tmp_path, media):
    bad = ("wrong_size", "blank", "broken", "huge", "lonely", "stray")
    files = {k: v for k, v in mixed_archive_files().items() if Path(k).stem in bad}
    archive = write_zip(tmp_path / "bad.zip", files)
    with pytest.raises(ValueError, match="no image was accepted") as info:
        import_archive(archive, "All bad", max_pixels=1000)
    assert info.value.report.as_dict()["refused"] == 6
    assert not Dataset.objects.filter(name="All bad").exists()
    assert not DatasetImage.objects.exists()
    assert not (media / "datasets").exists() or not list((media / "datasets").rglob("*.png"))


def test_a_failure_midway_removes_the_files_already_written(tmp_path, media, monkeypatch):
    from studies.core import importers

    archive = write_zip(tmp_path / "ok.zip", mixed_archive_files())
    real = importers.check_pair_files
    calls = []

    def failing(source, image_name, mask_name, max_pixels):
        calls.append(image_name)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(source, image_name, mask_name, max_pixels)

    monkeypatch.setattr(importers, "check_pair_files", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        import_archive(archive, "Midway", max_pixels=1000)
    assert not Dataset.objects.filter(name="Midway").exists()
    assert not DatasetImage.objects.exists()
    assert list((media / "datasets").rglob("*.png")) == []


def test_pointprompt_pair_in_an_archive(tmp_path):
    samples = np.empty(3, object)
    labels = np.empty(3, object)
    for i in range(3):
        samples[i] = np.full((5, 5, 3), 10 * i, np.uint8)
        labels[i] = mask(shape=(5, 5), box=(1, 3, 1, 3))
    labels[2] = np.zeros((5, 5), np.uint8)  # empty
    buffers = {}
    for name, array in (("samples.npy", samples), ("labels.npy", labels)):
        b = io.BytesIO()
        np.save(b, array, allow_pickle=True)
        buffers[f"pp/{name}"] = b.getvalue()
    dataset, report = import_archive(
        write_zip(tmp_path / "pp.zip", buffers), "PP upload", max_pixels=1000
    )
    assert dataset.source == "pointprompt" and dataset.images.count() == 2
    assert [(r["name"], r["reason"]) for r in report.refused] == [("2", "empty mask")]


def upload(client, name, data: bytes, filename="pairs.zip"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/datasets/upload",
        {"name": name, "archive": SimpleUploadedFile(filename, data)},
    )


def test_web_upload_runs_a_job_with_a_report_and_names_bad_fields(
    client, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_MAX_PIXELS = 1000
    user = researcher()
    client.force_login(user)
    assert "masks/x_1.png" in client.get("/datasets/upload").content.decode()
    data = write_zip(tmp_path / "a.zip", mixed_archive_files()).read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, "Web data", data)
    assert response.status_code == 302
    job = Job.objects.get(kind="import")
    assert response["Location"] == f"/datasets/imports/{job.pk}"
    assert job.study is None and job.status == "done" and job.dataset.name == "Web data"
    assert job.report["accepted"] == 4 and job.report["refused_by_reason"]["empty mask"] == 1
    page = client.get(response["Location"]).content.decode()
    assert "4</b> pairs accepted" in page and "size mismatch" in page and "nan" not in page
    assert not list((Path(settings.MEDIA_ROOT) / "imports").iterdir())  # the archive is removed
    # the data set page: thumbnails, counts, new study with the data set chosen
    detail = client.get(f"/datasets/{job.dataset.pk}/").content.decode()
    assert 'id="image-count">4<' in detail and "8 x 6 pixels" in detail
    first = job.dataset.images.first()
    thumb = client.get(f"/datasets/{job.dataset.pk}/thumbs/{first.pk}/mask.png")
    assert thumb.status_code == 200 and b"".join(thumb.streaming_content)[:4] == b"\x89PNG"
    form = client.get(f"/studies/new?dataset={job.dataset.pk}").content.decode()
    assert f'<option value="{job.dataset.pk}" selected>' in form
    # bad input: 400 naming the field, nothing stored
    before = (Job.objects.count(), Dataset.objects.count())
    refused = upload(client, "Web data", data)
    assert refused.status_code == 400 and "name: a data set named" in refused.content.decode()
    refused = upload(client, "Other", b"plain text", filename="x.zip")
    assert refused.status_code == 400 and "archive: the upload is not a zip or tar" in (
        refused.content.decode()
    )
    settings.DATASET_UPLOAD_MAX_BYTES = 100
    refused = upload(client, "Other", data)
    assert refused.status_code == 400 and "over the limit" in refused.content.decode()
    assert (Job.objects.count(), Dataset.objects.count()) == before
