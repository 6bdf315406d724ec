"""The intervention workspace played at 1280x720, 1920x1080, 800x1000 and on an emulated touch
phone (Pixel 5): a practice image first (said in the message line, its trial logged, then the
study's image), the image is fully in view, a polygon closed with Enter becomes the region and
Enter on a focused button presses that button only (Finish asks first), `a` applies, the
result is drawn without moving the page, a reload shows the last result again, the whole status
line is visible, the survey is a focused dialog in view, and axe-core finds no serious or
critical violation. Screenshots: tests/artifacts/intervention_workspace_*.png."""

from __future__ import annotations

import pytest

from studies.models import Assignment
from tests.browser_support import finish_practice, screenshot
from tests.intervention.test_browser_intervention import Page, weights
from tests.intervention_fixtures import classifier_spec, intervention_study
from tests.prompting.test_workspace_viewports import (
    VIEWPORTS,
    axe_serious,
    box,
    in_view,
    status_clipped,
    text_cut,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_whole_intervention_study_at_every_viewport(live_server, chromium, tmp_path, name):
    spec = VIEWPORTS[name]
    study = intervention_study(
        classifier_spec(weights(tmp_path)), n_images=2, overlay="gradcam", practice_image=1
    )
    participant = study.participants.first()
    if isinstance(spec, str):
        device = chromium._impl_obj._browser_type._playwright.devices[spec]  # noqa: SLF001
        options = {k: v for k, v in device.items() if k != "default_browser_type"}
    else:
        options = spec
    touch = bool(options.get("has_touch"))
    context = chromium.new_context(**options)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    violations = {}
    try:
        page.goto(f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
        page.check("#agree")
        page.click("#consent-submit")
        page.click("#start")
        page.wait_for_selector("#app[data-phase=annotate]")
        p = Page(page)

        # the practice image first: said in the reserved message line; its trial is logged
        assert p.data("practice") == "1" and page.inner_text("#progress") == "Practice image"
        assert "Practice image — not part of the study's data" in page.inner_text("#banner")
        assert not text_cut(page, "#banner") and status_clipped(page) == []
        practice = Assignment.objects.get(pk=int(p.data("assignment")))
        assert practice.practice
        w, h = int(p.data("width")), int(p.data("height"))
        page.click("#tool-rect")
        p.drag((w // 4, h // 4), (w // 2, h // 2))
        page.keyboard.press("a")
        p.wait_trials(1)
        assert "Practice image" in page.inner_text("#banner")  # still said after a trial
        violations["practice"] = axe_serious(page)
        screenshot(page, f"intervention_workspace_{name}_practice")
        finish_practice(page)
        assert practice.trials.count() == 1
        assert page.inner_text("#progress") == "Image 1 of 1"
        assert "practice is over" in page.inner_text("#banner")
        screenshot(page, f"intervention_workspace_{name}_start")
        assert in_view(page, "#canvas-paint") and in_view(page, ".ws-bar")
        assert page.evaluate("() => document.activeElement.id") == "canvas-paint"
        violations["annotate"] = axe_serious(page)
        before = (box(page, "#canvas-paint"), box(page, ".ws-bar"))

        page.click("#tool-polygon")
        w, h = int(p.data("width")), int(p.data("height"))
        for q in [(w // 4, h // 4), (3 * w // 4, h // 4), (w // 2, 3 * h // 4)]:
            x, y = p.to_screen(*q)
            if touch:
                page.touchscreen.tap(x, y)
            else:
                page.mouse.click(x, y)
        assert p.area() == 0
        assert page.evaluate("() => document.activeElement.id") == "canvas-paint"
        page.keyboard.press("Enter")  # the image has focus: Enter closes the clicked polygon
        area = p.area()
        assert area > 0 and p.data("trials") == "0"
        # Enter on a focused button presses that button and no other
        page.focus("#clear-region")
        page.keyboard.press("Enter")
        assert p.area() == 0 and p.data("trials") == "0"
        page.keyboard.press("u")  # focus is back on the image: undo brings the region back
        assert p.area() == area
        page.focus("#finish")
        page.keyboard.press("Enter")  # Finish asks first; the focused choice is "keep working"
        page.wait_for_selector("#confirm", state="visible")
        assert page.evaluate("() => document.activeElement.id") == "confirm-no"
        page.keyboard.press("Enter")
        assert not page.is_visible("#confirm")
        assert p.data("trials") == "0" and p.data("tool") == "polygon"
        assert Assignment.objects.get(pk=int(p.data("assignment"))).status != "finished"
        assert status_clipped(page) == []

        page.focus("#canvas-paint")
        page.keyboard.press("a")  # the key that applies
        p.wait_trials(1)
        assert p.data("applied") == "1"
        assert (box(page, "#canvas-paint"), box(page, ".ws-bar")) == before, "the page moved"
        prob_after = page.inner_text("#prob-after")
        screenshot(page, f"intervention_workspace_{name}_result")

        page.reload()  # the last result comes back with the page
        page.wait_for_selector("#app[data-phase=annotate]")
        assert p.data("applied") == "1" and p.area() == area
        assert page.inner_text("#prob-after") == prob_after

        page.click("#finish")
        page.click("#confirm-yes")
        page.wait_for_selector("#survey", state="visible")
        assert in_view(page, "#survey")
        assert page.evaluate("() => document.activeElement.closest('#survey') !== null")
        violations["survey"] = axe_serious(page)
        screenshot(page, f"intervention_workspace_{name}_survey")
        page.click("#survey-no")
        page.wait_for_url(f"**/s/{study.pk}/done")
        violations["done"] = axe_serious(page)
    finally:
        context.close()
    assert errors == []
    assert violations == {k: [] for k in violations}, violations
