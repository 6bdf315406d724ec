"""The analysis page's "What predicts a good prompt": the regression Job (progress, report), its
cache on the study's data (a new event or an exclusion invalidates it), no leakage between the
folds, the section, its plot and CSV, and a clear failure without timesteps."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from studies.models import Job, PromptEvent
from studies.prompting import regression
from tests.export_sessions import run_sessions
from tests.factories import prompting_study, researcher
from workers.regression_tasks import run_regression_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_models(monkeypatch):
    monkeypatch.setattr(regression, "TREES", 8)
    monkeypatch.setattr(regression, "REPEATS", 1)


@pytest.fixture
def study():
    study = prompting_study(n_images=4, participants=3)
    run_sessions(study)
    return study


def run(study):
    job, started = regression.start_regression(study)
    if started:
        run_regression_job(job.pk)
    job.refresh_from_db()
    return job, started


def test_job_reports_r2_and_importances_without_leakage(study):
    job, started = run(study)
    assert started and job.status == "done" and job.progress == 1.0 and job.done == job.total
    report = job.report
    n_timesteps = PromptEvent.objects.filter(
        assignment__participant__study=study, timestep__isnull=False
    ).count()
    assert report["n_rows"] == n_timesteps == report["n_tested"]
    models = {r["model"] for r in report["r2"]}
    assert models == {"linear", "forest"}
    assert {r["dataset"] for r in report["r2"]} == {study.dataset.name, "all"}
    assert len(report["importances"]) == 2 * len(report["features"])
    assert "Current score" not in report["features"] and "Best score" not in report["features"]
    assert len(report["folds"]) >= 2
    for fold in report["folds"]:  # a participant (an image) is never in both train and test
        assert fold["n_test"] and fold["n_train"]
        assert not set(fold["train_participants"]) & set(fold["test_participants"])
        assert not set(fold["train_images"]) & set(fold["test_images"])


def test_cached_until_the_data_changes(study):
    first, started = run(study)
    again, started_again = run(study)
    assert started and not started_again and again.pk == first.pk
    assert regression.current_job(study).pk == first.pk
    # a new event changes the key: the result is out of date, a new run starts
    event = PromptEvent.objects.filter(assignment__participant__study=study).order_by("-pk").first()
    event.pk = None
    event.seq += 1000
    event.client_event_id = "extra-event"
    event.timestep = None
    event.save()
    assert regression.current_job(study) is None
    second, started = run(study)
    assert started and second.pk != first.pk and second.status == "done"
    # excluding a participant changes it too
    study.participants.filter(number=1).update(excluded=True)
    assert regression.current_job(study) is None
    third, _ = run(study)
    students = {p for f in third.report["folds"] for p in f["test_participants"]}
    code = study.participants.get(number=1).code
    assert not any(s.endswith("/" + code) for s in students)


def test_section_plot_and_csv(study, client):
    client.force_login(researcher())
    page = client.get(reverse("study-analysis", args=[study.pk]))
    assert b'id="regression"' in page.content and b"Not run yet" in page.content
    assert client.get(reverse("study-regression-csv", args=[study.pk])).status_code == 404
    response = client.post(reverse("study-regression-start", args=[study.pk]))
    assert response.status_code == 302
    job = Job.objects.get(study=study, kind="regression")
    assert job.params["key"] == regression.data_key(study)
    page = client.get(reverse("study-analysis", args=[study.pk]))
    assert b'id="regression-status"' in page.content  # queued: its status and progress
    run_regression_job(job.pk)
    page = client.get(reverse("study-analysis", args=[study.pk]))
    assert b'id="regression-r2"' in page.content and b"plot-prompt-regression" in page.content
    svg = client.get(reverse("study-regression-plot", args=[study.pk, "svg"]))
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    png = client.get(reverse("study-regression-plot", args=[study.pk, "png"]))
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO(client.get(
        reverse("study-regression-csv", args=[study.pk])
    ).content.decode())))  # fmt: skip
    assert {r["table"] for r in rows} == {"r2", "permutation_importance"}
    assert any(r["dataset"] == "all" and r["model"] == "forest" for r in rows)


def test_no_timesteps_fails_the_job_clearly():
    study = prompting_study(n_images=2, participants=2)
    job, started = regression.start_regression(study)
    with pytest.raises(ValueError, match="has no timesteps to regress on"):
        run_regression_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "has no timesteps" in job.error
    again, started = regression.start_regression(study)  # a failed job does not block a rerun
    assert started and again.pk != job.pk
