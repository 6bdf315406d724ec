"""Automated prompting strategies (pure) and the baseline job on a scripted study."""

import csv
import io
import json
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


# ------------------------------------------------- PointPrompt's released strategies (default)


def dataset_arrays(study):
    from workers.model_cache import ground_truth, load_rgb

    images = list(study.dataset.images.order_by("index"))
    return (
        images,
        [load_rgb(i.image.path) for i in images],
        [ground_truth(i.mask.path) for i in images],
    )


@pytest.mark.django_db(transaction=True)
def test_released_strategies_by_default_give_the_released_runs_points(media, tmp_path):
    from interventions.metrics import rle_decode
    from interventions.pointprompt.released_names import RELEASED_STRATEGIES
    from interventions.pointprompt.strategies import released_iou, run_released

    # the study asks for the best predicted mask; the released protocol still scores masks[0]
    study = prompting_study(n_images=3, participants=1, mask_choice="best_predicted")
    call_command(
        "prompt_baselines", str(study.pk), "--fixed", "3", "2", "--seed", "2024", "--no-progress"
    )
    images, rgb, masks = dataset_arrays(study)
    for strategy in RELEASED_STRATEGIES:
        expected = run_released(strategy, rgb, masks, (3, 2), 2024)  # one stream, index order
        rows = list(
            BaselineResult.objects.filter(study=study, strategy=strategy).order_by("image__index")
        )
        assert [r.image_id for r in rows] == [i.pk for i in images]
        for row, (green, red), gt in zip(rows, expected, masks, strict=True):
            assert row.green == green.tolist() and row.red == red.tolist(), strategy
            assert (row.count_source, row.seed, row.n_green, row.n_red) == ("fixed", 2024, 3, 2)
            assert row.mask_index == 0
            assert row.iou == released_iou(rle_decode(row.mask_rle), gt)
    extra = {s: 1 for s in ("entropy", "max_dist")}
    for strategy in RELEASED_STRATEGIES:
        row = BaselineResult.objects.filter(study=study, strategy=strategy).first()
        assert len(row.green) == 3 + extra.get(strategy, 0), strategy  # the initial point kept

    run_export(study, "tidy", tmp_path / "t.zip")
    archive = zipfile.ZipFile(tmp_path / "t.zip")
    rows = list(csv.DictReader(io.StringIO(archive.read("baselines.csv").decode())))
    assert {r["strategy"] for r in rows} == set(RELEASED_STRATEGIES)
    assert {r["count_source"] for r in rows} == {"fixed"} and {r["seed"] for r in rows} == {"2024"}
    manifest = json.loads(archive.read("manifest.json"))
    definitions = manifest["baseline_definitions"]
    assert set(definitions) == set(RELEASED_STRATEGIES)
    assert "as released" in definitions["kmediod"]["definition"]
    assert definitions["rand"]["count_sources"] == ["fixed"]


@pytest.mark.django_db(transaction=True)
def test_released_count_sources_table_human_mean_and_one_point(media):
    from interventions.pointprompt.released_names import mean_count
    from studies.prompting.baselines import released_units

    study = prompting_study(n_images=3, participants=2)
    with pytest.raises(ValueError, match="no scored timesteps"):
        released_units(study)  # not a PointPrompt data set and nobody has prompted yet
    with pytest.raises(CommandError, match="no scored timesteps"):
        call_command("prompt_baselines", str(study.pk), "--no-progress")
    assert not Job.objects.filter(kind="baseline").exists()
    run_sessions(study, seed=2, stagnate=False)
    units = released_units(study)
    greens, reds = human_best_counts(study)
    assert {(u.n_green, u.n_red, u.count_source) for u in units} == {
        (mean_count(greens), mean_count(reds), "human_mean")
    }
    assert [u.image_id for u in units] == list(
        study.dataset.images.order_by("index").values_list("pk", flat=True)
    )
    study.dataset.name = "stop_sign"  # PointPrompt's "Stop sign": the released table
    study.dataset.save()
    assert {(u.n_green, u.n_red, u.count_source) for u in released_units(study)} == {
        (8, 1, "point_nums")
    }
    call_command("prompt_baselines", str(study.pk), "--strategy", "rand", "--no-progress")
    table_rows = BaselineResult.objects.filter(strategy="rand")
    assert {(r.count_source, r.n_green, r.n_red, len(r.green), len(r.red)) for r in table_rows} == {
        ("point_nums", 8, 1, 8, 1)
    }
    call_command(
        "prompt_baselines", str(study.pk), "--strategy", "entropy", "--one-point", "--no-progress"
    )
    rows = BaselineResult.objects.filter(strategy="entropy")
    assert rows.count() == 3 and {r.count_source for r in rows} == {"one_point"}
    assert {(len(r.green), len(r.red)) for r in rows} == {(2, 2)}  # 1 + the initial point


def human_best_counts(study):
    from studies.prompting.analysis import best_position
    from studies.prompting.exports.records import study_assignment_timesteps

    greens, reds = [], []
    for _, steps in study_assignment_timesteps(study):
        best = steps[best_position([s["iou"] for s in steps])]
        greens.append(len(best["green"]))
        reds.append(len(best["red"]))
    return greens, reds


@pytest.mark.django_db(transaction=True)
def test_released_bad_requests_name_the_problem_and_store_nothing(media):
    from django.core.files.base import ContentFile
    from PIL import Image

    study = prompting_study(n_images=3, participants=1)
    for args, message in (
        (["--strategy", "saliency"], "unavailable here: needs the released VST"),
        (["--fixed", "2", "0"], "need at least 1 green and 1 red"),
        (["--fixed", "2", "1", "--one-point"], "not both"),
        (["--strategy", "random", "--one-point"], "for the released strategies"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("prompt_baselines", str(study.pk), *args, "--no-progress")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("prompt_baselines", str(study.pk), "--strategy", "magic", "--no-progress")
    # an empty ground truth on image 1: the job fails naming it, with nothing stored
    image = study.dataset.images.get(index=1)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((image.height, image.width), np.uint8)).save(buffer, "PNG")
    image.mask.save("empty.png", ContentFile(buffer.getvalue()))
    with pytest.raises(
        (CommandError, ValueError), match="image 1 of data set .* empty ground-truth mask"
    ):
        call_command("prompt_baselines", str(study.pk), "--fixed", "1", "1", "--no-progress")
    assert not BaselineResult.objects.exists()
    failed = Job.objects.get(kind="baseline", status="failed")
    assert "image 1" in failed.error and failed.done == 0


@pytest.mark.django_db(transaction=True)
def test_old_baselines_keep_their_csv_and_say_their_definition(media, tmp_path):
    study = prompting_study(n_images=2, participants=1)
    run_sessions(study, seed=2, stagnate=False)
    call_command("prompt_baselines", str(study.pk), "--strategy", "random", "--no-progress")
    run_export(study, "tidy", tmp_path / "t.zip")
    archive = zipfile.ZipFile(tmp_path / "t.zip")
    text = archive.read("baselines.csv").decode()
    assert text.splitlines()[0] == (
        "strategy,seed,count_source,image_index,assignment_id,participant,n_green,n_red,green,"
        "red,iou,predicted_iou,mask_index,model_id"
    )  # the columns of before: a study with old results only exports the same bytes
    row = BaselineResult.objects.get()
    assert text.splitlines()[1].startswith(
        f"random,0,human_best,{row.image.index},{row.assignment_id},"
    )
    # the manifest of a study with families only stays as it was (tests/core/test_v0_database)
    assert "baseline_definitions" not in json.loads(archive.read("manifest.json"))
    call_command(
        "prompt_baselines",
        str(study.pk),
        "--strategy",
        "rand",
        "--fixed",
        "1",
        "1",
        "--no-progress",
    )
    run_export(study, "tidy", tmp_path / "t2.zip")
    archive = zipfile.ZipFile(tmp_path / "t2.zip")
    definitions = json.loads(archive.read("manifest.json"))["baseline_definitions"]
    assert list(definitions) == ["rand", "random"]
    assert "own family" in definitions["random"]["definition"]
    assert definitions["random"]["count_sources"] == ["human_best"]
    new = archive.read("baselines.csv").decode().splitlines()
    assert set(text.splitlines()) <= set(new)  # the old rows, byte for byte


@pytest.mark.django_db(transaction=True)
def test_baselines_form_runs_released_counts_and_refuses_bad_counts(client, media):
    study = prompting_study(n_images=2, participants=0)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'value="kmediod" checked' in page and 'value="kmedoids">' in page
    assert "saliency (unavailable)" in page and "VST saliency" in page
    url = f"/studies/{study.pk}/analysis/baselines"
    response = client.post(
        url,
        {"strategy": ["rand"], "seed": "3", "counts": "fixed", "green": "2", "red": "x"},
        follow=True,
    )
    assert (
        b"red count must be a whole number" in response.content
        and not study.jobs.filter(kind="baseline").exists()
    )
    response = client.post(
        url, {"strategy": ["rand", "max_dist"], "seed": "3", "counts": "one_point"}, follow=True
    )
    assert response.status_code == 200
    rows = BaselineResult.objects.filter(study=study)
    assert rows.count() == 4 and {r.count_source for r in rows} == {"one_point"}
    assert {r.seed for r in rows} == {3}
