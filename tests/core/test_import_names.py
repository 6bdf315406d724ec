"""The researcher's file names travel with the images (issue 24): the data set page, the study's
image table, replay, analysis and every export (COCO file_name, a column in the tidy tables,
images.csv, the manifest). Data sets without names keep their exports' bytes: no new column,
file or manifest key appears for them."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from studies.core.enrolment import enrol_participant
from studies.core.exports import run_export
from studies.core.importers import import_archive
from studies.models import Study
from studies.prompting.views_analysis import study_tables
from tests.export_sessions import run_sessions
from tests.factories import classical_spec, prompting_study, researcher

pytestmark = pytest.mark.django_db


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def named_study(tmp_path, settings) -> Study:
    settings.IMPORT_MAX_SIDE = 40
    rng = np.random.default_rng(3)
    files = {}
    for name, (h, w) in (("cat", (30, 40)), ("dog", (60, 80))):  # dog is scaled to 40 x 30
        obj = np.zeros((h, w), np.uint8)
        obj[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
        picture = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        picture[obj > 0] += 150
        files[f"photos/images/{name}.png"] = png(picture)
        files[f"photos/masks/{name}_mask.png"] = png(obj)
    path = tmp_path / "named.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    dataset, _ = import_archive(path, "My photos", max_pixels=10**6)
    study = Study.objects.create(
        kind="prompting", title="named", dataset=dataset, model=classical_spec(), owner=researcher(),
        status="open", protocol=Study._meta.get_field("protocol").get_default(),
    )  # fmt: skip
    enrol_participant(study)
    run_sessions(study)
    return study


def read_csv(zf, name):
    return list(csv.DictReader(io.StringIO(zf.read(name).decode())))


def test_names_on_the_pages_and_in_the_analysis(client, tmp_path, settings, media):
    study = named_study(tmp_path, settings)
    client.force_login(researcher())
    dataset_page = client.get(f"/datasets/{study.dataset.pk}/").content.decode()
    assert "cat.png" in dataset_page and "dog.png" in dataset_page
    assert "40 x 30 pixels (original 80 x 60)" in dataset_page  # sizes written one way
    assert "(width x height)" in dataset_page and "scaled down" in dataset_page
    study_page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'class="small image-name">cat.png<' in study_page
    assignment = study.participants.get().assignments.order_by("order").first()
    replay = client.get(f"/studies/{study.pk}/assignments/{assignment.pk}/replay").content.decode()
    assert f'id="image-name">{assignment.image.original_name}<' in replay
    assert assignment.image.size_words in replay
    rows = study_tables(study)["assignments"]
    assert {r["image_name"] for r in rows} == {"cat.png", "dog.png"}
    assert list(rows[0])[3:5] == ["image_index", "image_name"]


def test_names_and_original_sizes_in_every_export(tmp_path, settings, media):
    study = named_study(tmp_path, settings)
    by_index = {im.index: im for im in study.dataset.images.all()}
    run_export(study, "coco", tmp_path / "coco.zip")
    coco = json.loads(zipfile.ZipFile(tmp_path / "coco.zip").read("annotations.json"))
    entries = {im["id"]: im for im in coco["images"]}
    assert {e["file_name"] for e in entries.values()} == {"cat.png", "dog.png"}
    dog = next(e for e in entries.values() if e["file_name"] == "dog.png")
    assert (dog["width"], dog["height"], dog["original_width"], dog["original_height"]) == (
        40,
        30,
        80,
        60,
    )
    cat = next(e for e in entries.values() if e["file_name"] == "cat.png")
    assert "original_width" not in cat

    run_export(study, "tidy", tmp_path / "tidy.zip")
    zf = zipfile.ZipFile(tmp_path / "tidy.zip")
    assignments = read_csv(zf, "assignments.csv")
    assert {(int(r["image_index"]), r["image_name"]) for r in assignments} == {
        (i, im.original_name) for i, im in by_index.items()
    }
    images = read_csv(zf, "images.csv")
    assert [r["image_name"] for r in images] == [
        by_index[i].original_name for i in sorted(by_index)
    ]
    assert {r["mask_name"] for r in images} == {"cat_mask.png", "dog_mask.png"}
    dog_row = next(r for r in images if r["image_name"] == "dog.png")
    assert (dog_row["width"], dog_row["original_width"], dog_row["scale"]) == ("40", "80", "0.5")
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["counts"]["images"] == 2 and "images.csv" in manifest["files"]

    run_export(study, "pointprompt", tmp_path / "pp.zip")
    manifest = json.loads(zipfile.ZipFile(tmp_path / "pp.zip").read("manifest.json"))
    rows = manifest["images"]["rows"]
    assert [r["image_name"] for r in rows] == [by_index[i].original_name for i in sorted(by_index)]
    assert "original_width / width" in manifest["images"]["note"]


def test_exports_of_data_without_names_are_unchanged(tmp_path):
    study = prompting_study(n_images=3, participants=1)
    run_sessions(study)
    run_export(study, "coco", tmp_path / "coco.zip")
    coco = json.loads(zipfile.ZipFile(tmp_path / "coco.zip").read("annotations.json"))
    assert [im["file_name"] for im in coco["images"]] == ["0.png", "1.png", "2.png"]
    assert all(set(im) == {"id", "file_name", "width", "height"} for im in coco["images"])
    run_export(study, "tidy", tmp_path / "tidy.zip")
    zf = zipfile.ZipFile(tmp_path / "tidy.zip")
    assert "images.csv" not in zf.namelist()
    assert "image_name" not in zf.read("assignments.csv").decode().splitlines()[0]
    manifest = json.loads(zf.read("manifest.json"))
    assert "images" not in manifest and "images" not in manifest["counts"]
    assert "image_name" not in study_tables(study)["assignments"][0]


def test_the_intervention_area_table_names_images_only_when_names_exist():
    from studies.intervention.views_analysis import area_rows
    from studies.models import DatasetImage

    def rows(*names):
        return {
            "rows": [
                {"image": DatasetImage(index=i, original_name=n), "trials": 0, "model_flip": None,
                 "human_flip_min": None, "human_flip_median": None}
                for i, n in enumerate(names)
            ]
        }  # fmt: skip

    assert [r["image_name"] for r in area_rows(rows("a.png", "b.jpg"))] == ["a.png", "b.jpg"]
    assert list(area_rows(rows("a.png"))[0])[:2] == ["image_index", "image_name"]
    assert "image_name" not in area_rows(rows("", ""))[0]
