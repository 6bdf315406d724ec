"""The researchers' export API and the analysis pages: session auth, ownership, jobs, downloads."""

import io
import zipfile

import pytest

from studies.models import Job
from tests.export_sessions import run_sessions
from tests.factories import prompting_study, researcher

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = prompting_study(n_images=3, participants=2)
    run_sessions(study, seed=4)
    return study


def test_export_api_runs_a_job_and_serves_the_zip(
    client, study, django_capture_on_commit_callbacks
):
    url = f"/api/v1/studies/{study.pk}/exports"
    assert client.post(url, {"format": "tidy"}, content_type="application/json").status_code in (
        401,
        403,
    )
    client.force_login(study.owner)
    bad = client.post(url, {"format": "xlsx"}, content_type="application/json")
    assert bad.status_code == 400 and "format" in bad.json()["error"]
    assert client.post(url, {}, content_type="application/json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(url, {"format": "pointprompt"}, content_type="application/json")
    assert started.status_code == 202, started.content
    job_id = started.json()["id"]
    state = client.get(f"/api/v1/exports/{job_id}").json()
    assert state["status"] == "done" and state["progress"] == 1.0 and state["error"] is None
    download = client.get(state["download_url"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive.namelist()[-1] == "manifest.json"
    assert any(
        n.startswith(f"Prompting results/{study.dataset.name}/st1/") for n in archive.namelist()
    )
    assert [e["id"] for e in client.get(url).json()["exports"]] == [job_id]


def test_other_researchers_get_404_and_collaborators_get_in(client, study):
    job = Job.objects.create(study=study, kind="export", params={"format": "coco"})
    client.force_login(researcher("mallory"))
    assert (
        client.post(
            f"/api/v1/studies/{study.pk}/exports",
            {"format": "coco"},
            content_type="application/json",
        ).status_code
        == 404
    )
    assert client.get(f"/api/v1/exports/{job.pk}").status_code == 404
    assert client.get(f"/api/v1/exports/{job.pk}/download").status_code == 404
    assert client.get(f"/studies/{study.pk}/analysis").status_code == 404
    colleague = researcher("bob")
    study.collaborators.add(colleague)
    client.force_login(colleague)
    answer = client.get(f"/api/v1/exports/{job.pk}")
    assert (
        answer.status_code == 200
        and answer.json()["status"] == "queued"
        and answer.json()["download_url"] is None
    )
    assert client.get(f"/api/v1/exports/{job.pk}/download").status_code == 409


def test_analysis_page_plots_and_csv(client, study, django_capture_on_commit_callbacks):
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Overprompting analysis" in html and "st1" in html and "human best" in html
    for name in (
        "iou_by_points",
        "iou_by_timestep",
        "best_vs_final",
        "overprompted_share",
        "human_vs_baselines",
    ):
        plot = client.get(f"/studies/{study.pk}/analysis/plots/{name}.png")
        assert plot.status_code == 200 and plot.content[:8] == b"\x89PNG\r\n\x1a\n", name
    csv_text = client.get(f"/studies/{study.pk}/analysis/assignments.csv").content.decode()
    header = csv_text.splitlines()[0].split(",")
    assert {"overprompted", "best", "final", "excess_after_best"} <= set(header)
    assert len(csv_text.splitlines()) == 1 + study.participants.count() * 3
    assert client.get(f"/studies/{study.pk}/analysis/nope.csv").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/studies/{study.pk}/analysis/baselines", {"strategy": ["random"], "seed": "1"}
        )
    assert response.status_code == 302
    assert (
        study.baselines.filter(strategy="random", seed=1).count() == study.participants.count() * 2
    )
    assert "auto random" in client.get(f"/studies/{study.pk}/analysis").content.decode()
