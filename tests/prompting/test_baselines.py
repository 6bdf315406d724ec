"""Automated prompting strategies (pure) and the baseline job on a scripted study."""

import csv
import io
import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from interventions.prompt_strategies import STRATEGIES, local_entropy, select_points
from studies.core.exports import run_export
from studies.models import BaselineResult, Job
from studies.prompting.baselines import baseline_units, start_baselines
from tests.export_sessions import run_sessions
from tests.factories import prompting_study


def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:60] = True
    return image, mask


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_are_seeded_and_stay_in_their_regions(strategy):
    image, mask = scene()
    green, red = select_points(strategy, image, mask, 4, 3, seed=7)
    again = select_points(strategy, image, mask, 4, 3, seed=7)
    assert np.array_equal(green, again[0]) and np.array_equal(red, again[1])
    assert green.shape == (4, 2) and red.shape == (3, 2)
    x, y = green[:, 0].astype(int), green[:, 1].astype(int)
    assert mask[y, x].all()
    assert not mask[red[:, 1].astype(int), red[:, 0].astype(int)].any()
    other = select_points(strategy, image, mask, 4, 3, seed=8)
    if strategy != "shi_tomasi":  # corners do not depend on the seed
        assert not np.array_equal(np.concatenate(other), np.concatenate([green, red]))


def test_max_distance_and_kmedoids_spread_points():
    image, mask = scene()
    green, _ = select_points("max_distance", image, mask, 2, 0, seed=0)
    # two farthest-point picks in a 30 x 40 box end on opposite sides
    assert np.hypot(*(green[0] - green[1])) > 25
    medoids, _ = select_points("kmedoids", image, mask, 4, 0, seed=0)
    centre = np.array([39.5, 24.5])
    assert np.all(np.hypot(*(medoids - centre).T) > 5)  # four medoids, not bunched at the centre


def test_entropy_of_flat_and_noisy_patches():
    grey = np.zeros((20, 20), np.uint8)
    grey[:, 10:] = np.random.default_rng(0).integers(0, 255, (20, 10))
    entropy = local_entropy(grey)
    assert (
        entropy[10, 2] == pytest.approx(0.0, abs=1e-9) and entropy[10, 16] > 2.5
    )  # flat: 0 bits; noise: near log2(16) = 4


def test_bad_requests_name_the_problem():
    image, mask = scene()
    with pytest.raises(ValueError, match="unknown strategy"):
        select_points("magic", image, mask, 1, 1, 0)
    with pytest.raises(ValueError, match="mask is empty"):
        select_points("random", image, np.zeros_like(mask), 1, 1, 0)
    with pytest.raises(ValueError, match="n_red"):
        select_points("random", image, mask, 1, -1, 0)


@pytest.mark.django_db(transaction=True)  # the command starts its job after a real commit
def test_baseline_job_stores_seeded_results_shown_in_exports(
    media, tmp_path, django_capture_on_commit_callbacks
):
    study = prompting_study(n_images=3, participants=1)
    run_sessions(study, seed=2, stagnate=False)
    units = baseline_units(study)
    assert len(units) == 1 and units[0].count_source == "human_best" and units[0].n_green >= 1
    with django_capture_on_commit_callbacks(execute=True):
        job = start_baselines(study, ["random", "max_distance"], seed=5)
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and job.progress == 1.0
    first = {r.key: (r.green, r.red, r.iou) for r in BaselineResult.objects.all()}
    assert all(0.0 <= r.iou <= 1.0 and r.mask_rle for r in BaselineResult.objects.all())
    call_command(
        "prompt_baselines",
        str(study.pk),
        "--strategy",
        "random",
        "--strategy",
        "max_distance",
        "--seed",
        "5",
        "--no-progress",
    )
    assert {
        r.key: (r.green, r.red, r.iou) for r in BaselineResult.objects.all()
    } == first  # rerun: identical
    call_command(
        "prompt_baselines",
        str(study.pk),
        "--strategy",
        "kmedoids",
        "--fixed",
        "2",
        "1",
        "--no-progress",
    )
    assert BaselineResult.objects.filter(count_source="fixed", n_green=2, n_red=1).count() == 3
    with pytest.raises(CommandError, match="not both 0"):
        call_command("prompt_baselines", str(study.pk), "--fixed", "0", "0", "--no-progress")
    assert Job.objects.filter(kind="baseline", status="done").count() == 3

    run_export(study, "tidy", tmp_path / "t.zip")
    rows = list(
        csv.DictReader(
            io.StringIO(zipfile.ZipFile(tmp_path / "t.zip").read("baselines.csv").decode())
        )
    )
    assert len(rows) == BaselineResult.objects.count() == 5
    run_export(study, "pointprompt", tmp_path / "p.zip")
    assert (
        f"Automated baselines/{study.dataset.name}/baselines.csv"
        in zipfile.ZipFile(tmp_path / "p.zip").namelist()
    )
