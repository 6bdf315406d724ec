"""Importing the released PointPrompt layout (Image datasets + Prompting data) from a generated
tree: every data set and its read-only human results, all or nothing per data set, and the
round trip through our PointPrompt export."""

import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from studies.core.enrolment import EnrolmentRefused, enrol_participant
from studies.core.exports import run_export
from studies.core.safe_npy import load_npy
from studies.models import Dataset, DatasetImage, PromptEvent, Study
from studies.prompting.exports.import_release import release_layout
from tests.factories import researcher
from tests.pointprompt_release import write_release_tree

pytestmark = pytest.mark.django_db


def run_import(root, *extra):
    researcher("alice")
    call_command(
        "import_pointprompt_release", str(root), "--owner", "alice", "--no-progress", *extra
    )


def stored_files(media) -> set[str]:
    return {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}


def test_every_data_set_and_its_human_results(tmp_path, capsys):
    truth = write_release_tree(tmp_path / "release", {"Tie": 5, "Bird": 4}, annotators=2)
    run_import(tmp_path / "release")
    assert "Bird: data set" in capsys.readouterr().out
    for name, expected in truth.items():
        dataset = Dataset.objects.get(name=name)
        images = list(DatasetImage.objects.filter(dataset=dataset).order_by("index"))
        assert len(images) == len(expected["samples"])
        for image, sample, label in zip(
            images, expected["samples"], expected["labels"], strict=True
        ):
            with Image.open(image.image.path) as im:
                assert np.array_equal(np.asarray(im), sample)
            with Image.open(image.mask.path) as im:
                assert np.array_equal(np.asarray(im) > 127, label.astype(bool))
        study = Study.objects.get(dataset=dataset)
        assert study.is_imported and study.status == "closed" and not study.allow_public_join
        assert study.imported_from.endswith(f"Prompting data/{name}")
        stored = {}
        for event in PromptEvent.objects.filter(assignment__participant__study=study).order_by(
            "assignment_id", "seq"
        ):
            key = (event.assignment.participant.code, event.assignment.image.index)
            stored.setdefault(key, []).append(
                (event.green, event.red, event.iou, event.round, event.mask_rle is not None)
            )
        assert set(stored) == set(expected["results"])
        for key, steps in expected["results"].items():
            assert stored[key] == [
                (g.tolist(), r.tolist(), s, rd + 1, True) for g, r, s, rd in steps
            ], key


def test_round_trip_through_our_pointprompt_export(tmp_path):
    write_release_tree(tmp_path / "release", {"Tie": 6}, annotators=3, seed=4)
    run_import(tmp_path / "release")
    study = Study.objects.get(dataset__name="Tie")
    run_export(study, "pointprompt", tmp_path / "out.zip")
    zipfile.ZipFile(tmp_path / "out.zip").extractall(tmp_path / "out")
    before = tmp_path / "release"
    after = tmp_path / "out"
    for name in ("samples.npy", "labels.npy"):
        a = load_npy(before / "Image datasets" / "Tie" / name)
        b = load_npy(after / "Image datasets" / "Tie" / name)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), (
            name
        )
    compared = 0
    for st in ("st1", "st2", "st3"):
        src, out = before / "Prompting data" / "Tie" / st, after / "Prompting results" / "Tie" / st
        for i in range(6):
            for rel in (
                f"points/{i}_green.npy",
                f"points/{i}_red.npy",
                f"scores/{i}score.npy",
                f"sorts/{i}_sort.npy",
                f"eachround/{i}_.npy",
            ):
                a, b = load_npy(src / rel), load_npy(out / rel)
                assert a.shape == b.shape, (st, rel)
                if a.dtype == object:
                    assert all(
                        np.array_equal(x.reshape(-1, 2), y.reshape(-1, 2))
                        for x, y in zip(a, b, strict=True)
                    ), (st, rel)
                else:
                    assert np.array_equal(a, b), (st, rel)
                compared += 1
            for mask in sorted((src / "masks").glob(f"{i}_*_mask.png")):
                with Image.open(mask) as x, Image.open(out / "masks" / mask.name) as y:
                    assert np.array_equal(np.asarray(x) > 127, np.asarray(y) > 127), mask.name
    assert compared == 3 * 6 * 5


def test_a_broken_file_is_named_and_nothing_of_its_data_set_is_stored(tmp_path, media):
    root = tmp_path / "release"
    write_release_tree(root, {"Bird": 3, "Tie": 4}, annotators=2)
    broken = root / "Prompting data" / "Tie" / "st2" / "scores" / "1score.npy"
    good = broken.read_bytes()
    broken.write_bytes(good[:20])
    with pytest.raises(CommandError) as error:
        run_import(root)
    message = str(error.value)
    assert "Tie" in message and "st2" in message and "1score.npy" in message
    assert "kept (complete): Bird" in message
    assert list(Dataset.objects.values_list("name", flat=True)) == ["Bird"]
    assert Study.objects.count() == 1
    bird = Dataset.objects.get(name="Bird")
    assert all(f.startswith(f"datasets/{bird.pk}/") for f in stored_files(media))  # Tie's gone
    broken.write_bytes(good)  # fixed: a rerun skips Bird and imports Tie
    run_import(root)
    assert sorted(Dataset.objects.values_list("name", flat=True)) == ["Bird", "Tie"]
    assert Study.objects.count() == 2


def test_bad_labels_and_bad_points_name_the_file(tmp_path):
    root = tmp_path / "release"
    write_release_tree(root, {"Tie": 3}, annotators=1)
    labels = load_npy(root / "Image datasets" / "Tie" / "labels.npy")
    labels[2] = np.zeros_like(labels[2])
    np.save(root / "Image datasets" / "Tie" / "labels.npy", labels, allow_pickle=True)
    with pytest.raises(CommandError, match=r"Tie: .*Image datasets/Tie: labels\[2\] has no object"):
        run_import(root)
    assert not Dataset.objects.exists() and not Study.objects.exists()

    root = tmp_path / "second"
    write_release_tree(root, {"Tie": 3}, annotators=1)
    green = load_npy(root / "Prompting data" / "Tie" / "st1" / "points" / "1_green.npy")
    green[0] = np.array([[99, 1]])  # outside the 20 x 16 image
    np.save(
        root / "Prompting data" / "Tie" / "st1" / "points" / "1_green.npy", green, allow_pickle=True
    )
    with pytest.raises(CommandError, match="st1 image 1: timestep 0 has green points outside"):
        run_import(root)
    assert not Dataset.objects.exists()


def test_the_layout_is_checked_and_nested_folders_are_found(tmp_path):
    with pytest.raises(ValueError, match="no 'Image datasets' folder"):
        release_layout(tmp_path)
    root = tmp_path / "release"
    write_release_tree(root, {"Tie": 2}, prompts_folder="Prompting data/Prompting Results")
    entries = release_layout(root)
    assert [e.name for e in entries] == ["Tie"]
    assert entries[0].results == root / "Prompting data" / "Prompting Results" / "Tie"
    (root / "Prompting data" / "Prompting Results" / "Cat" / "st1").mkdir(parents=True)
    with pytest.raises(ValueError, match="prompts for a data set that .* does not have"):
        release_layout(root)
    with pytest.raises(CommandError, match="no data set 'Dog'"):
        (root / "Prompting data" / "Prompting Results" / "Cat" / "st1").rmdir()
        (root / "Prompting data" / "Prompting Results" / "Cat").rmdir()
        run_import(root, "--only", "Dog")
    with pytest.raises(CommandError, match="not imported from"):
        Dataset.objects.create(name="Tie")
        run_import(root)


def test_an_imported_study_is_read_only(client, tmp_path):
    write_release_tree(tmp_path / "release", {"Tie": 3}, annotators=1)
    run_import(tmp_path / "release")
    study = Study.objects.get()
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/")
    html = page.content.decode()
    assert page.status_code == 200 and "Imported human results" in html
    assert 'id="open-study"' not in html and 'id="generate-links"' not in html
    response = client.post(f"/studies/{study.pk}/status", {"action": "open"}, follow=True)
    assert "read-only" in response.content.decode()
    study.refresh_from_db()
    assert study.status == "closed" and study.opened_at is None
    before = study.participants.count()
    client.post(f"/studies/{study.pk}/links", {"count": 2})
    assert study.participants.count() == before
    with pytest.raises(EnrolmentRefused, match="imported"):
        enrol_participant(study)
    assert client.get(f"/studies/{study.pk}/edit").status_code == 302
    client.logout()
    assert client.get(f"/s/{study.pk}/join").status_code == 403
    client.force_login(study.owner)
    analysis = client.get(f"/studies/{study.pk}/analysis")
    html = analysis.content.decode()
    assert analysis.status_code == 200 and "human best" in html and "as recorded" in html


@pytest.mark.django_db(transaction=True)  # the command starts its job after a real commit
def test_baselines_run_on_the_released_human_prompts(tmp_path):
    from studies.models import BaselineResult

    write_release_tree(tmp_path / "release", {"Tie": 3}, annotators=2)
    run_import(tmp_path / "release")
    study = Study.objects.get()
    call_command("prompt_baselines", str(study.pk), "--no-progress")  # every strategy
    # the released protocol: one prompt per image of the data set, "Tie" being one of
    # PointPrompt's 16 data sets its counts come from the released point_nums table
    results = BaselineResult.objects.filter(study=study)
    strategies = set(results.values_list("strategy", flat=True))
    assert strategies == {"rand", "shi-tomasi", "kmediod", "entropy", "max_dist"}
    assert results.count() == study.dataset.images.count() * len(strategies)
    assert set(results.values_list("count_source", flat=True)) == {"point_nums"}
    assert all(0.0 <= r.iou <= 1.0 for r in results)


def test_the_papers_table_over_the_imported_release(tmp_path):
    import csv
    import io

    from studies.models import BaselineResult

    truth = write_release_tree(tmp_path / "release", {"Tie": 4, "Bird": 3}, annotators=2, seed=2)
    run_import(tmp_path / "release")
    studies = list(Study.objects.order_by("pk"))
    for k, study in enumerate(studies):
        for image in study.dataset.images.all():
            BaselineResult.objects.create(
                study=study, image=image, strategy="rand", seed=0, count_source="fixed",
                key=f"rand:0:fixed:i{image.pk}", n_green=1, n_red=1, iou=0.2 + 0.1 * k,
            )  # fmt: skip
    out = io.StringIO()
    call_command("compare_prompts", *[str(s.pk) for s in studies], stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["dataset"], r["strategy"]) for r in rows] == [
        ("Bird", "rand"),
        ("Tie", "rand"),
        ("overall", "rand"),
    ]
    best = {  # the best score of every scored image x annotator, from the generated tree
        name: [max(score for _, _, score, _ in steps) for steps in truth[name]["results"].values()]
        for name in ("Bird", "Tie")
    }
    assert [int(r["n_human"]) for r in rows] == [
        len(best["Bird"]),
        len(best["Tie"]),
        len(best["Bird"]) + len(best["Tie"]),
    ]
    assert [int(r["n_automated"]) for r in rows] == [3, 4, 7]
    for row, values in zip(
        rows, (best["Bird"], best["Tie"], best["Bird"] + best["Tie"]), strict=True
    ):
        assert float(row["human_best_mean_iou"]) == pytest.approx(np.mean(values))
    with pytest.raises(CommandError, match="no study with id 999"):
        call_command("compare_prompts", "999")
