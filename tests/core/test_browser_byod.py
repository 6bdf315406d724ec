"""Bring your own data, in headless Chromium against a live server (eager Celery, SQLite): a
researcher uploads an archive with good and bad pairs, reads the report, creates a study from
the data set, runs it with two participants (through the service behind the API), and reads
both kinds' analysis pages at 1400x900 and 1280x720: no horizontal scroll, no "nan".
Screenshots of every page this touches at 1280x720, 1920x1080 and 800 wide go to tests/artifacts/."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from django.test import Client

from interventions.metrics import rle_encode
from studies.core.enrolment import enrol_participant
from studies.intervention.precompute import start_image_analyses
from studies.models import Dataset, Study
from tests.browser_support import ARTIFACTS, screenshot
from tests.core.test_dataset_upload import mask, png
from tests.export_sessions import run_sessions
from tests.factories import ParticipantClient, classical_spec, researcher
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080), "800w": (800, 900)}


def shots(page, name: str) -> None:
    for label, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        screenshot(page, f"byod_{name}_{label}")
    page.set_viewport_size({"width": 1280, "height": 720})


def archive(path) -> str:
    rng = np.random.default_rng(0)
    files = {}
    for name in ("cat", "dog", "owl"):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        m = mask((48, 64), (10, 34, 12, 44))
        image[m > 0] = (230, 80, 40)
        files[f"pets/images/{name}.png"] = png(image)
        files[f"pets/masks/{name}.png"] = png(m)
    files["pets/images/empty.png"] = png(np.zeros((48, 64, 3)))
    files["pets/masks/empty.png"] = png(np.zeros((48, 64)))
    files["pets/images/odd.png"] = png(np.zeros((48, 64, 3)))
    files["pets/masks/odd.png"] = png(mask((40, 64)))
    files["pets/images/broken.jpg"] = b"\xff\xd8 not really a jpeg"
    files["pets/masks/broken.png"] = png(mask((48, 64)))
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return str(path)


def plots_loaded(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.plot img')]"  # a function: the CSP bans eval
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )


def check_fits(page, what: str) -> None:
    plots_loaded(page)
    for w, h in ((1400, 900), (1280, 720)):
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(150)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner, f"{what} scrolls sideways at {w}x{h}: {scroll} > {inner}"
        text = page.inner_text("body")
        assert not re.search(r"\bnan\b", text, re.IGNORECASE), f"{what} shows nan at {w}x{h}"
        # every plot is inside its card
        widths = page.evaluate(
            "[...document.querySelectorAll('figure.plot')].map(f => "
            "[f.getBoundingClientRect().right, f.querySelector('img').getBoundingClientRect().right])"
        )
        assert widths and all(img <= card + 0.5 for card, img in widths), (what, widths)


def login(page, url: str) -> None:
    page.goto(f"{url}/studies/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice")
    page.click("#login-submit")


def test_upload_report_study_from_dataset_and_both_analysis_pages(live_server, new_page, tmp_path):
    spec = classical_spec()
    owner = researcher("alice")
    # an intervention study (its analysis page is checked at the end), made before the browser
    # starts: SQLite's shared-cache test database refuses a write from this thread while the
    # live server's thread is inside a request of the page's (a table lock, not a wait)
    istudy = intervention_study(
        classifier_spec(random_demo_weights(tmp_path)), n_images=1, participants=2
    )
    istudy.owner = owner
    istudy.save(update_fields=["owner"])
    start_image_analyses(istudy)
    pc = ParticipantClient(Client(), istudy.participants.first())
    pc.consent()
    a = pc.participant.assignments.select_related("image").first()
    for seq, (op, box) in enumerate([("delete", (5, 5, 40, 40)), ("insert", (20, 30, 90, 100))]):
        m = np.zeros((a.image.height, a.image.width), bool)
        m[box[1] : box[3], box[0] : box[2]] = True
        body = {
            "client_event_id": f"c{seq}",
            "seq": seq,
            "operation": op,
            "region_rle": rle_encode(m),
        }
        assert pc.post(f"assignments/{a.pk}/trials", body).status_code == 200
    r = new_page((1280, 720))
    login(r, live_server.url)
    r.click("#nav-datasets")
    shots(r, "1_datasets")
    r.click("#upload-dataset")
    assert "masks/x_1.png" in r.inner_text("#naming-rules")
    shots(r, "2_upload")
    r.fill("#id_name", "Pets")
    r.set_input_files("#id_archive", archive(tmp_path / "pets.zip"))
    r.click("#start-upload")
    r.wait_for_selector("#import-report")
    assert r.inner_text("#import-status") == "done"
    assert r.inner_text("#accepted-count") == "3" and r.inner_text("#refused-count") == "3"
    refused = r.inner_text("#refused-table")
    for reason in ("empty mask", "size mismatch", "unreadable"):
        assert reason in refused
    shots(r, "3_report")
    r.click("#dataset-link")
    r.wait_for_selector("#thumb-grid img")
    assert r.inner_text("#image-count") == "3"
    r.wait_for_function(
        "() => [...document.querySelectorAll('#thumb-grid img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    shots(r, "4_dataset")
    r.click("#new-study-from-dataset")
    dataset = Dataset.objects.get(name="Pets")
    assert r.locator("#id_dataset").input_value() == str(dataset.pk)
    r.fill("#id_title", "Pets prompting")
    r.select_option("#id_model", value=str(spec.pk))
    r.click("#save-study")
    r.click("#open-study")
    r.fill("#id_count", "2")
    r.click("#generate-links")
    study = Study.objects.get(title="Pets prompting")
    assert study.dataset == dataset and study.participants.count() == 2
    run_sessions(study)  # two participants, through the service behind the API
    enrol_participant(study)  # a third who never starts
    r.reload()
    r.fill("#participant-search", "st3")
    r.click("#participants button[type=submit]")
    assert r.locator("#participant-table tbody tr").count() == 1
    shots(r, "5_study")
    r.click("#study-analysis")
    assert "Overprompting analysis" in r.inner_text("h1")
    assert "st3 (not started: no timestep yet)" in r.inner_text("#left-out")
    assert "bootstrap percentile interval" in r.inner_text("#summary")
    check_fits(r, "prompting analysis")
    shots(r, "6_prompting_analysis")
    # an export: the list refreshes itself until the job is done
    r.click("#start-export")
    r.wait_for_selector("#export-list li[data-status=done]")

    r.goto(f"{live_server.url}/studies/{istudy.pk}/")
    r.click("#study-analysis")
    assert "Intervention analysis" in r.inner_text("h1")
    assert "st2 (not started: no trial yet)" in r.inner_text("#left-out")
    check_fits(r, "intervention analysis")
    shots(r, "7_intervention_analysis")
    assert not r.errors, r.errors
    assert ARTIFACTS.exists()
