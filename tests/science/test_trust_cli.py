"""``python -m interventions trust`` end to end on generated demo scenes with the committed demo
CNN: the summary equals a recomputation from scores.csv, rows equal direct trust_scores calls,
labels from folders, resuming."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from interventions.cli import main
from interventions.demo_data import CLASS_NAMES, generate_scene
from interventions.models import load_demo_classifier
from interventions.trust import TRUST_SCORE_NAMES, trust_score, trust_scores


@pytest.fixture(scope="module")
def scenes():
    """Clean scenes (the demo CNN gets them right) and low-contrast ones (often wrong)."""
    out = []
    for dataset, tag in (("Clean shapes", "clean"), ("Low contrast", "low")):
        for i in range(6):
            out.append((f"{tag}_{i}.png", generate_scene(dataset, i, seed=7)))
    return out


@pytest.fixture
def image_folder(tmp_path, scenes):
    folder = tmp_path / "images"
    folder.mkdir()
    lines = ["filename,label,comment"]
    for k, (name, scene) in enumerate(scenes):
        Image.fromarray(scene.image).save(folder / name)
        lines.append(f"{name},{scene.label if k % 2 else scene.class_name},x")  # index or name
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return folder, labels


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_trust_cli_end_to_end(image_folder, scenes, tmp_path, capsys):
    folder, labels = image_folder
    out = tmp_path / "out"
    argv = ["trust", "--model", "demo", "--images", str(folder), "--labels", str(labels)]
    assert main([*argv, "--out", str(out), "--batch-size", "5"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_images"] == 12
    for name in ("table", "scatter"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:1000]

    rows = read_csv(out / "scores.csv")
    assert [r["id"] for r in rows] == [name for name, _ in scenes]
    assert [int(r["label"]) for r in rows] == [s.label for _, s in scenes]
    assert [r["label_name"] for r in rows] == [s.class_name for _, s in scenes]
    correct = np.array([int(r["label"]) == int(r["prediction"]) for r in rows])
    assert [r["correct"] == "True" for r in rows] == correct.tolist()
    assert 0 < correct.sum() < len(rows)  # both kinds, so every AUROC is defined

    # summary.csv and summary.json equal sklearn on scores.csv (scores oriented)
    summary_csv = {r["score"]: r for r in read_csv(out / "summary.csv")}
    summary_json = json.loads((out / "summary.json").read_text())
    assert list(summary_csv) == list(TRUST_SCORE_NAMES)
    assert summary_json["accuracy"] == pytest.approx(correct.mean())
    assert summary_json["n_correct"] == int(correct.sum())
    for name in TRUST_SCORE_NAMES:
        values = np.array([float(r[name]) for r in rows])
        oriented = values if trust_score(name).higher_is_trustworthy else -values
        auroc, aupr = roc_auc_score(correct, oriented), average_precision_score(correct, oriented)
        assert float(summary_csv[name]["auroc"]) == pytest.approx(auroc, abs=1e-12), name
        assert float(summary_csv[name]["aupr"]) == pytest.approx(aupr, abs=1e-12), name
        assert float(summary_csv[name]["accuracy"]) == pytest.approx(correct.mean())
        assert summary_json["scores"][name]["auroc"] == pytest.approx(auroc, abs=1e-12)
        assert summary_json["scores"][name]["aupr"] == pytest.approx(aupr, abs=1e-12)

    # a row equals trust_scores on the classifier's own preprocessing of that image
    classifier = load_demo_classifier()
    for k in (0, 7):
        direct = trust_scores(classifier.module, classifier.preprocess(scenes[k][1].image))
        assert int(rows[k]["prediction"]) == int(direct["prediction"][0])
        for name in TRUST_SCORE_NAMES:
            assert float(rows[k][name]) == pytest.approx(float(direct[name][0]), rel=1e-4), name


def test_labels_from_dirs_and_resume(tmp_path, scenes):
    folder = tmp_path / "by_class"
    for k, (name, scene) in enumerate(scenes[4:10]):
        sub = folder / (scene.class_name if k % 2 else str(scene.label))
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(sub / name)
    argv = ["trust", "--model", "demo", "--images", str(folder), "--labels-from-dirs"]
    assert main([*argv, "--out", str(tmp_path / "full"), "--batch-size", "4"]) == 0
    full = read_csv(tmp_path / "full" / "scores.csv")
    assert len(full) == 6
    for row in full:
        assert CLASS_NAMES[int(row["label"])] == row["label_name"]
        assert row["id"].split("/")[0] in (row["label_name"], row["label"])

    # an interrupted run: the first rows stored; --resume scores only the rest
    part = tmp_path / "part"
    part.mkdir()
    lines = (tmp_path / "full" / "scores.csv").read_text().splitlines(keepends=True)
    (part / "scores.csv").write_text("".join(lines[:3]))
    assert main([*argv, "--out", str(part), "--resume", "--batch-size", "2"]) == 0
    resumed = read_csv(part / "scores.csv")
    assert [r["id"] for r in resumed] == [r["id"] for r in full]
    assert resumed[:2] == full[:2]  # kept as written
    for a, b in zip(resumed[2:], full[2:], strict=True):
        for name in TRUST_SCORE_NAMES:
            assert float(a[name]) == pytest.approx(float(b[name]), rel=1e-4), name
    assert json.loads((part / "summary.json").read_text())["n_images"] == 6


def test_bad_labels_are_reported(image_folder, tmp_path, capsys):
    folder, labels = image_folder
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label\nclean_0.png,hexagon\n")
    argv = ["trust", "--model", "demo", "--images", str(folder), "--out", str(tmp_path / "o")]
    assert main([*argv, "--labels", str(bad)]) == 2
    assert "unknown class 'hexagon'" in capsys.readouterr().err
    bad.write_text("file,class\nclean_0.png,3\n")
    assert main([*argv, "--labels", str(bad)]) == 2
    assert "'filename' and 'label'" in capsys.readouterr().err
    bad.write_text("filename,label\nmissing.png,3\n")
    assert main([*argv, "--labels", str(bad)]) == 2
    assert "image not found" in capsys.readouterr().err
    assert main([*argv, "--labels-from-dirs"]) == 2  # images directly in the folder
    assert "class folder" in capsys.readouterr().err
