"""Round trip: scripted sessions -> pointprompt export -> import_pointprompt + results importer
reproduces every point set and score exactly, and re-exporting gives byte-identical files."""

import json
import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from studies.core.exports import run_export
from studies.core.importers import import_pointprompt
from studies.models import Study
from studies.prompting.exports.import_results import import_pointprompt_results
from tests.export_sessions import run_sessions
from tests.factories import prompting_study, researcher

pytestmark = pytest.mark.django_db


def log_of(study: Study) -> dict:
    """{(participant code, image index): [(green, red, iou, round), ...]} with points floored."""
    out = {}
    for participant in study.participants.all():
        for assignment in participant.assignments.select_related("image"):
            steps = [
                (
                    np.floor(np.asarray(e.green, float)).astype(int).reshape(-1, 2).tolist(),
                    np.floor(np.asarray(e.red, float)).astype(int).reshape(-1, 2).tolist(),
                    e.iou,
                    e.round,
                )
                for e in assignment.events.filter(timestep__isnull=False).order_by("seq")
            ]
            if steps:
                out[(participant.code, assignment.image.index)] = steps
    return out


def test_pointprompt_round_trip_is_exact(tmp_path):
    study = prompting_study(n_images=4, participants=2)
    run_sessions(study, seed=3)
    name = study.dataset.name
    first = tmp_path / "first.zip"
    run_export(study, "pointprompt", first)
    zipfile.ZipFile(first).extractall(tmp_path / "first")

    dataset = import_pointprompt(tmp_path / "first" / "Image datasets" / name, "Round trip")
    imported = import_pointprompt_results(
        tmp_path / "first" / "Prompting results" / name, dataset, study.model, researcher()
    )
    original = log_of(study)
    assert original and log_of(imported) == original  # every point set, score and round, exactly
    for (code, index), steps in original.items():
        events = (
            imported.participants.get(code=code)
            .assignments.get(image__index=index)
            .events.order_by("seq")
        )
        assert [e.iou for e in events] == [s[2] for s in steps]
        assert all(e.mask_rle is not None for e in events)

    second = tmp_path / "second.zip"
    run_export(imported, "pointprompt", second)
    a = json.loads(zipfile.ZipFile(first).read("manifest.json"))["files"]
    b = json.loads(zipfile.ZipFile(second).read("manifest.json"))["files"]
    renamed = {k.replace(name, "Round trip"): v["sha256"] for k, v in a.items()}
    assert renamed == {
        k: v["sha256"] for k, v in b.items()
    }  # byte-identical files, images included


def test_results_importer_names_the_problem(tmp_path):
    study = prompting_study(n_images=3, participants=1)
    run_sessions(study, seed=1, stagnate=False)
    run_export(study, "pointprompt", tmp_path / "e.zip")
    zipfile.ZipFile(tmp_path / "e.zip").extractall(tmp_path / "e")
    folder = tmp_path / "e" / "Prompting results" / study.dataset.name
    dataset = import_pointprompt(tmp_path / "e" / "Image datasets" / study.dataset.name, "Again")
    np.save(folder / "st1" / "scores" / "0score.npy", np.zeros(99))
    with pytest.raises(ValueError, match="differ in length"):
        import_pointprompt_results(folder, dataset, study.model, researcher())
    assert not Study.objects.filter(dataset=dataset).exists()  # all or nothing
    with pytest.raises(CommandError, match="no data set named"):
        call_command(
            "import_pointprompt_results",
            str(folder),
            "--dataset",
            "nope",
            "--model",
            str(study.model.pk),
            "--owner",
            "alice",
        )
