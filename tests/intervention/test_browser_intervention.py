"""The intervention study in headless Chromium against a live server (eager Celery, SQLite): a
participant paints a region with every tool, deletes it, sees the prediction change, undoes,
inserts, finishes and answers the survey; the researcher's pages show the result.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from interventions.metrics import rle_decode
from studies.models import Assignment, InterventionTrial
from tests.browser_support import screenshot
from tests.intervention_fixtures import (
    DEMO_WEIGHTS,
    classifier_spec,
    intervention_study,
    random_demo_weights,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def weights(tmp_path):
    return DEMO_WEIGHTS if DEMO_WEIGHTS.is_file() else random_demo_weights(tmp_path)


class Page:
    def __init__(self, page):
        self.page = page

    def data(self, name: str) -> str:
        return self.page.locator("#app").get_attribute(f"data-{name}")

    def area(self) -> int:
        return int(self.data("area"))

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Image pixel centre -> page coordinates on the paint canvas."""
        box = self.page.locator("#canvas-paint").bounding_box()
        w, h = int(self.data("width")), int(self.data("height"))
        return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h

    def drag(self, a, b, steps: int = 8) -> None:
        mouse = self.page.mouse
        mouse.move(*self.to_screen(*a))
        mouse.down()
        mouse.move(*self.to_screen(*b), steps=steps)
        mouse.up()

    def click(self, p) -> None:
        self.page.mouse.click(*self.to_screen(*p))

    def wait_trials(self, n: int) -> None:
        self.page.wait_for_function(
            "n => { const a = document.getElementById('app'); return a.dataset.trials === String(n) && a.dataset.busy === '0'; }",
            arg=n,
        )


def test_participant_paints_deletes_undoes_inserts_and_finishes(
    live_server, new_page, tmp_path, django_capture_on_commit_callbacks
):
    study = intervention_study(
        classifier_spec(weights(tmp_path)), n_images=1, overlay="gradcam", show_ground_truth=True
    )
    participant = study.participants.first()
    assignment = participant.assignments.select_related("image").first()
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    ys, xs = np.nonzero(gt)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())

    page = new_page()
    page.goto(f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
    page.check("#agree")
    page.click("#consent-submit")
    assert page.locator("#intervention-howto").is_visible()
    page.click("#start")
    page.wait_for_selector("#app[data-phase=annotate]")
    p = Page(page)
    assert (
        page.locator("#goal")
        .inner_text()
        .startswith("Goal: find the smallest region whose deletion")
    )
    assert page.locator("#top5 tbody tr").count() == 5
    assert page.locator("#panel-overlay").is_visible()
    screenshot(page, "intervention_annotate_start")

    # rectangle over the object's bounding box, a brush stroke, the eraser, a polygon
    page.click("#tool-rect")
    p.drag((x0, y0), (x1, y1))
    rect_area = p.area()
    assert rect_area == (x1 - x0 + 1) * (y1 - y0 + 1)
    page.click("#tool-brush")
    p.drag((x0, y1 + 4), (x1, y1 + 4))
    after_brush = p.area()
    assert after_brush > rect_area
    page.click("#tool-eraser")
    p.drag((x0, y1 + 4), (x1, y1 + 4))
    assert p.area() < after_brush
    page.click("#tool-polygon")
    before_polygon = p.area()
    for q in [(2, 2), (14, 2), (14, 14), (2, 2)]:  # a corner triangle, closed on its first vertex
        p.click(q)
    assert p.area() > before_polygon
    page.keyboard.press("Control+z")  # undo the polygon
    assert p.area() == before_polygon
    painted = p.area()

    # delete: the prediction changes
    page.click("#apply")
    p.wait_trials(1)
    prob_before, prob_after = float(p.data("prob-before")), float(p.data("prob-after"))
    assert prob_after != prob_before
    assert page.locator("#prob-change").inner_text() == f"{prob_after - prob_before:+.3f}".replace(
        "+-", "-"
    )
    assert page.locator("#flip").is_visible()
    assert page.locator("#prob-after").inner_text() == f"{prob_after:.3f}"
    screenshot(page, "intervention_after_delete")

    # undo the apply: the view returns to the unmodified image, the region stays
    page.click("#undo")
    assert p.data("applied") == "0" and p.area() == painted
    assert page.locator("#prob-after").inner_text() == "–"

    # insert the same region
    page.check("#op-insert")
    page.click("#apply")
    p.wait_trials(2)
    screenshot(page, "intervention_after_insert")

    page.click("#finish")
    page.wait_for_selector("#confirm", state="visible")  # finishing asks first
    page.click("#confirm-yes")
    page.wait_for_selector("#survey", state="visible")
    page.click("#survey-yes")
    page.wait_for_url(f"**/s/{study.pk}/done")
    screenshot(page, "intervention_done")
    assert not page.errors, page.errors

    trials = list(InterventionTrial.objects.filter(assignment=assignment).order_by("seq"))
    assert [t.operation for t in trials] == ["delete", "insert"]
    assert trials[0].region_rle == trials[1].region_rle
    region = rle_decode(trials[0].region_rle)
    assert (
        int(region.sum()) == painted and region[y0 : y1 - 5, x0 : x1 + 1].all()
    )  # the eraser took the rows near y1 + 4
    assert trials[0].prob_after == pytest.approx(prob_after, abs=1e-6)
    assert all(t.overlay == "gradcam" for t in trials)
    assert all(t.input == "pointer" for t in trials)  # painted with the mouse
    a = Assignment.objects.get(pk=assignment.pk)
    assert a.status == "finished" and a.survey_answers["answer"] == "yes"

    # the researcher's pages: study comparison, the image's maps and curves, the timeline
    with django_capture_on_commit_callbacks(execute=True):
        from studies.intervention.precompute import start_image_analyses

        start_image_analyses(study)
    r = new_page()
    r.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.pk}/")
    r.fill("input[name=username]", study.owner.username)
    r.fill("input[name=password]", f"pw-{study.owner.username}")
    r.click("#login-submit")
    r.click("#intervention-analysis")
    r.wait_for_selector("#intervention-images")
    assert r.locator("#n-trials").inner_text() == "2"
    assert r.locator("#analyses-status").inner_text() == "Done"
    loaded = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    r.wait_for_function(loaded)
    screenshot(r, "intervention_researcher_study")
    r.click(f"#intervention-images a >> text='{assignment.image.index}'")
    r.wait_for_selector("#maps")
    assert (
        r.locator("#maps figure").count() == 5 and r.locator("#image-trials tbody tr").count() == 2
    )
    r.wait_for_function(loaded)
    screenshot(r, "intervention_researcher_image")
    r.click(f"#image-trials a >> text='{participant.code}'")
    r.wait_for_selector(".timeline .trial")
    assert r.locator(".timeline .trial").count() == 2
    r.wait_for_function(loaded)
    screenshot(r, "intervention_researcher_timeline")
    assert not r.errors, r.errors
