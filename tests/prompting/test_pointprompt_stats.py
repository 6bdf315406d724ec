"""The PointPrompt export's stats.csv (--with-stats): equal to what the released feature script
computes from that same export (our plain reference walking the unpacked zip), absent and
byte-neutral without the flag, refused cleanly on bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from studies.core.exports import ExportParamError, check_params
from studies.models import Job, PromptEvent
from tests.export_sessions import run_sessions
from tests.factories import prompting_study, researcher

sys.path.insert(0, str(Path(__file__).parents[1] / "science"))
from pointprompt_reference import reference_stats  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = prompting_study(n_images=4, participants=3)
    run_sessions(study)
    return study


def export(study, out, *flags):
    call_command(
        "export_study", str(study.pk), "--format", "pointprompt", "--out", str(out),
        "--no-progress", *flags, stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    return zipfile.ZipFile(out)


def test_stats_equal_the_released_walk_of_the_same_export(study, tmp_path):
    zf = export(study, tmp_path / "pp.zip", "--with-stats")
    assert "stats.csv" in zf.namelist() and zf.namelist()[-1] == "manifest.json"
    rows = list(csv.reader(io.StringIO(zf.read("stats.csv").decode())))
    header, body = rows[0], rows[1:]
    root = tmp_path / "x"
    zf.extractall(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        columns, ref = reference_stats("Prompting results", "Image datasets", study.dataset.name)
    finally:
        os.chdir(cwd)
    assert header == columns
    n_timesteps = PromptEvent.objects.filter(
        assignment__participant__study=study, timestep__isnull=False
    ).count()
    assert len(body) == len(ref) == n_timesteps > 0
    # ours walks the folders by participant number; scandir's order may differ: compare per key
    key = {"Student": columns.index("Student"), "Image ID": columns.index("Image ID")}
    k_t = columns.index("Current timestamp")

    def keyed(table):
        return {(r[key["Student"]], int(r[key["Image ID"]]), int(r[k_t])): r for r in table}

    ours, theirs = keyed(body), keyed(ref)
    assert set(ours) == set(theirs)
    for k, ref_row in theirs.items():
        for name, cell, value in zip(columns, ours[k], ref_row, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert cell == "", (k, name)
            elif isinstance(value, str):
                assert cell == value, (k, name)
            else:
                assert abs(float(cell) - float(value)) <= 1e-9, (k, name, cell, value)
    codes = list(study.participants.order_by("number").values_list("code", flat=True))
    students = list(dict.fromkeys(r[key["Student"]] for r in body))
    assert students == [
        f"Prompting results/{study.dataset.name}/{c}"
        for c in codes
        if any(r[key["Student"]].endswith("/" + c) for r in body)
    ]
    manifest = json.loads(zf.read("manifest.json"))
    block = manifest["stats"]
    assert block["variant"] == "released" and "gather_statistics.py" in block["definitions"]
    assert block["rows"] == len(body) == manifest["counts"]["stats_rows"]
    assert "stats.csv" in manifest["files"]


def test_without_the_flag_nothing_changes(study, tmp_path):
    plain = export(study, tmp_path / "plain.zip")
    stats = export(study, tmp_path / "stats.zip", "--with-stats")
    assert "stats.csv" not in plain.namelist()
    assert [n for n in stats.namelist() if n != "stats.csv"] == plain.namelist()
    for name in plain.namelist():
        if name != "manifest.json":
            assert plain.read(name) == stats.read(name), name
    manifest = json.loads(plain.read("manifest.json"))
    assert "stats" not in manifest and "stats_rows" not in manifest["counts"]
    assert set(manifest) == {
        "manifest_version", "format", "exported_at", "code_version", "study", "protocol",
        "models", "coordinates", "counts", "csv_cells", "practice", "files",
    }  # fmt: skip
    assert check_params("pointprompt", None) == {"with_stats": False}
    with pytest.raises(ExportParamError, match="pointprompt format only"):
        check_params("tidy", {"with_stats": True})


def test_a_study_without_timesteps_is_refused_and_nothing_is_written(tmp_path):
    study = prompting_study(n_images=2, participants=1)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "pp.zip"
    with pytest.raises(CommandError, match="has no timesteps"):
        export(study, out, "--with-stats")
    assert not list((tmp_path / "out").iterdir())  # no zip, no .partial
    export(study, out)  # without stats it still exports (empty results)
    assert out.exists()


def test_an_empty_ground_truth_is_refused_and_nothing_is_written(study, tmp_path):
    image = study.dataset.images.get(index=1)
    blank = io.BytesIO()
    Image.fromarray(np.zeros((image.height, image.width), np.uint8)).save(blank, "PNG")
    image.mask.save("blank.png", ContentFile(blank.getvalue()))
    (tmp_path / "out").mkdir()
    with pytest.raises(CommandError, match="image 1's ground truth is empty"):
        export(study, tmp_path / "out" / "pp.zip", "--with-stats")
    assert not list((tmp_path / "out").iterdir())


def test_the_export_form_passes_the_checkbox(study, client):
    client.force_login(researcher())
    response = client.post(
        reverse("study-export-start", args=[study.pk]),
        {"format": "pointprompt", "with_stats": "1"},
    )
    assert response.status_code == 302
    job = Job.objects.filter(study=study, kind="export").latest("pk")
    assert job.params == {"format": "pointprompt", "with_stats": True}
    page = client.get(reverse("study-analysis", args=[study.pk]))
    assert b'name="with_stats"' in page.content
