"""Run by tests/prompting/test_coco_postgresql.py against PostgreSQL (not collected on its own):
the COCO export's final and best rows picked by the database (DISTINCT ON) equal those of the
portable walk over every timestep."""

from __future__ import annotations

import pytest
from django.db import connection

from studies.prompting.exports import coco
from tests.export_sessions import run_sessions
from tests.factories import prompting_study


@pytest.mark.django_db
def test_distinct_on_picks_the_same_rows(monkeypatch):
    assert connection.vendor == "postgresql"
    study = prompting_study(n_images=3, participants=3)
    run_sessions(study, seed=5)
    picked = list(coco.final_and_best(study))
    assert picked and picked == list(coco._final_and_best_distinct_on(study))
    monkeypatch.setattr(connection, "vendor", "portable")
    assert list(coco.final_and_best(study)) == picked
