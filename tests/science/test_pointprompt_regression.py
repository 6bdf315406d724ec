"""What predicts a good prompt (interventions/pointprompt/regression.py): the folds never put a
participant or an image on both sides, every row is tested once, and the models find a
planted signal."""

from __future__ import annotations

import numpy as np
import pytest

from interventions.pointprompt.features import COLUMNS, StatsTable
from interventions.pointprompt.regression import cross_classified_splits, run_regressions


def synthetic_table(n_people=5, n_images=5, per=4, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_people):
        for i in range(n_images):
            for _t in range(per):
                row = {c: float(rng.random()) for c in COLUMNS}
                row.update({"Dataset": "D" if i % 2 else "E", "Student": f"st{p}", "Image ID": i})
                row["Current score"] = 0.8 * row["Prompt coverage"] + noise * rng.normal()
                row["Exc encasing"] = None  # empty cells are imputed
                rows.append([row[c] for c in COLUMNS])
    return StatsTable(list(COLUMNS), rows)


def test_folds_keep_participants_and_images_apart():
    rng = np.random.default_rng(1)
    people = rng.choice([f"p{k}" for k in range(7)], size=300)
    images = rng.choice([f"i{k}" for k in range(9)], size=300)
    folds = cross_classified_splits(people, images, k=3, seed=0)
    assert len(folds) == 9
    tested = np.zeros(300, int)
    for fold in folds:
        train, test = fold["train"], fold["test"]
        assert not set(people[train]) & set(people[test])
        assert not set(images[train]) & set(images[test])
        tested[test] += 1
    assert (tested == 1).all()  # every row tested exactly once
    with pytest.raises(ValueError, match="at least 2 participants and 2 images"):
        cross_classified_splits(["a"] * 5, ["x", "y", "x", "y", "x"])


def test_regressions_find_the_planted_feature():
    report = run_regressions(synthetic_table(), k=3, seed=0, n_repeats=2, trees=15)
    overall = {r["model"]: r["r2"] for r in report["r2"] if r["dataset"] == "all"}
    assert overall["linear"] > 0.9 and overall["forest"] > 0.7
    assert {r["dataset"] for r in report["r2"]} == {"D", "E", "all"}
    for model in ("linear", "forest"):
        rows = [r for r in report["importances"] if r["model"] == model]
        best = max(rows, key=lambda r: r["importance"])
        assert best["feature"] == "Prompt coverage"
    assert report["n_tested"] == report["n_rows"] == 100
    assert report["caution"].startswith("only 5 participants and 5 images")
    for fold in report["folds"]:
        assert not set(fold["train_participants"]) & set(fold["test_participants"])
        assert not set(fold["train_images"]) & set(fold["test_images"])


def test_no_signal_gives_no_skill():
    table = synthetic_table(noise=0.0)
    k = table.columns.index("Current score")
    rng = np.random.default_rng(5)
    for row in table.rows:
        row[k] = float(rng.random())  # unrelated to every feature
    report = run_regressions(table, k=3, seed=0, n_repeats=1, trees=15)
    overall = {r["model"]: r["r2"] for r in report["r2"] if r["dataset"] == "all"}
    assert overall["linear"] < 0.1 and overall["forest"] < 0.1
