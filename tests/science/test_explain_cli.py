"""``python -m interventions explain|voice|causal`` on a demo scene with the committed demo CNN."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interventions.cli import main
from interventions.demo_data import generate_scene


@pytest.fixture
def scene_png(tmp_path):
    scene = generate_scene("Clean shapes", 3, seed=5)
    path = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(path)
    return path, scene


def test_voice_writes_overlays_and_stats(scene_png, tmp_path):
    path, scene = scene_png
    out = tmp_path / "voice"
    assert main(["voice", "--model", "demo", "--image", str(path), "--out", str(out)]) == 0
    for name in ("Explanation.png", "Contrast.png", "Uncertainty of Explanation.png"):
        img = np.asarray(Image.open(out / name))
        assert img.shape == scene.image.shape and img.dtype == np.uint8
    stats = json.loads((out / "stats.json").read_text())
    assert stats["voice"]["prediction_name"] == scene.class_name
    assert 0.0 <= stats["voice"]["iou"] <= 1.0
    assert np.load(out / "uncertainty.npy").shape == (64, 64)


def test_explain_and_causal(scene_png, tmp_path):
    path, scene = scene_png
    assert (
        main(
            [
                "explain",
                "--model",
                "demo",
                "--image",
                str(path),
                "--out",
                str(tmp_path / "e"),
                "--method",
                "gradcam++",
            ]
        )
        == 0
    )
    top5 = json.loads((tmp_path / "e" / "stats.json").read_text())["top5"]
    assert top5[0]["name"] == scene.class_name and len(top5) == 5
    assert (
        main(["causal", "--model", "demo", "--image", str(path), "--out", str(tmp_path / "c")]) == 0
    )
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    dele, ins = stats["curves"]["deletion"], stats["curves"]["insertion"]
    assert stats["step"] == 64  # one row per step, as RISE on 224 x 224
    assert len(dele["scores"]) == len(ins["scores"]) == 64 + 1
    assert dele["auc"] < ins["auc"]
    assert (tmp_path / "c" / "deletion.png").stat().st_size > 0


def test_bad_arguments_are_named(scene_png, tmp_path):
    path, _ = scene_png
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "interventions",
            "voice",
            "--model",
            "demo",
            "--image",
            str(tmp_path / "nope.png"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert missing.returncode != 0 and "image not found" in missing.stderr
    assert (
        main(
            [
                "explain",
                "--model",
                "resnet19",
                "--weights",
                str(path),
                "--image",
                str(path),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
