"""The tidy export's prompt features computed in worker processes (a large study) equal those
computed in the export's own process, row for row (issue 26)."""

from __future__ import annotations

import zipfile

import pytest

from studies.core.exports import run_export
from studies.prompting.exports import tidy
from tests.export_sessions import run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


def test_pool_and_inline_features_give_the_same_table(tmp_path, monkeypatch):
    study = prompting_study(n_images=3, participants=3)
    run_sessions(study, seed=3)
    run_export(study, "tidy", tmp_path / "inline.zip")
    monkeypatch.setattr(tidy, "FEATURE_POOL_MIN", 0)
    monkeypatch.setattr(tidy, "FEATURE_TASK", 5)  # several tasks in flight
    used = []
    real = tidy.with_features

    def spy(steps, meta, ground_truth, n_steps):
        used.append(n_steps >= tidy.FEATURE_POOL_MIN)
        yield from real(steps, meta, ground_truth, n_steps)

    monkeypatch.setattr(tidy, "with_features", spy)
    run_export(study, "tidy", tmp_path / "pool.zip")
    assert used == [True]
    with zipfile.ZipFile(tmp_path / "inline.zip") as a, zipfile.ZipFile(tmp_path / "pool.zip") as b:
        inline, pooled = a.read("timesteps.csv"), b.read("timesteps.csv")
    assert inline.count(b"\n") > 10 and inline == pooled
