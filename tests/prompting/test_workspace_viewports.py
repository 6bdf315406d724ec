"""The prompting workspace played as a crowd worker would, on a laptop (1280x720), a large
screen (1920x1080), a narrow window (800x1000) and an emulated touch phone (Pixel 5): a practice
image first (its banner says so, its events are logged, then the study's image follows), the
clicked image is fully in view, the mask is drawn on it, nothing moves on a click, the whole
status line is visible, the survey is a focused dialog in view, Enter finishes the image only from Finish,
and axe-core finds no serious or critical violation on any participant page. Screenshots:
tests/artifacts/workspace_*.png."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from studies.models import Assignment, PromptEvent
from tests.browser_support import finish_practice, screenshot
from tests.factories import prompting_study
from tests.prompting.test_browser_prompting import Annotator, landmarks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {
    "laptop": {"viewport": {"width": 1280, "height": 720}},
    "large": {"viewport": {"width": 1920, "height": 1080}},
    "narrow": {"viewport": {"width": 800, "height": 1000}},
    "phone": "Pixel 5",
}


def axe_serious(page) -> list[str]:
    """Serious or critical axe-core violations on the page (axe.min.js ships in the package)."""
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


STATUS_CLIPPED = """() => {
  const status = document.querySelector('.ws-status').getBoundingClientRect();
  return [...document.querySelectorAll('.ws-status > *')].filter((e) => {
    const r = e.getBoundingClientRect();
    if (!r.width || getComputedStyle(e).visibility === 'hidden') return false;
    const cut = e.scrollWidth > e.clientWidth + 1;  // text cut off inside (an ellipsis)
    return cut || r.top < status.top - 0.5 || r.bottom > status.bottom + 0.5
      || r.left < status.left - 0.5 || r.right > status.right + 0.5;
  }).map((e) => `${e.id || e.className}: ${e.textContent}`);
}"""


def status_clipped(page) -> list[str]:
    """Parts of the status line that are not wholly visible (clipped or cut off)."""
    return page.evaluate(STATUS_CLIPPED)


def status_clipped_while_waiting(page) -> list[str]:
    """status_clipped with the longest "waiting" notice shown, as a busy model shows it."""
    page.evaluate(
        "() => { const p = document.getElementById('pending'); p.dataset.on = '1';"
        " p.textContent = 'Waiting for the model… (3 actions queued)'; }"
    )
    try:
        return status_clipped(page)
    finally:
        page.evaluate(
            "() => { const p = document.getElementById('pending'); p.dataset.on = '0';"
            " p.textContent = ''; }"
        )


def text_cut(page, selector: str) -> bool:
    """Is the element's text cut off (it overflows its box, which clips it)?"""
    return page.eval_on_selector(
        selector,
        "e => e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1",
    )


def box(page, selector: str) -> dict:
    return page.eval_on_selector(
        selector,
        "e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height}; }",
    )


def in_view(page, selector: str) -> bool:
    b, vp = box(page, selector), page.viewport_size
    return (
        b["x"] >= -0.5
        and b["y"] >= -0.5
        and b["x"] + b["w"] <= vp["width"] + 0.5
        and b["y"] + b["h"] <= vp["height"] + 0.5
    )


class Player(Annotator):
    """Clicks with a tap on touch devices, a mouse click elsewhere."""

    def __init__(self, page, touch: bool):
        super().__init__(page)
        self.touch = touch

    def click(self, xy, *, right: bool = False, expect_seq: int | None = None) -> None:
        if not self.touch or right:
            return super().click(xy, right=right, expect_seq=expect_seq)
        s = self.scale()
        seq = int(self.data("seq"))
        self.page.locator("#canvas-image").tap(
            position={"x": (xy[0] + 0.5) * s, "y": (xy[1] + 0.5) * s}
        )
        self.wait_idle(seq + 1 if expect_seq is None else expect_seq)


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_whole_prompting_study_at_every_viewport(live_server, chromium, name):
    from playwright.sync_api import sync_playwright  # noqa: F401  (devices come from the browser)

    spec = VIEWPORTS[name]
    # image 2 is the practice image; the participant's one real image is one of the others
    study = prompting_study(n_images=3, participants=0, practice_image=2, round_indicator=True)
    study.images_per_participant = 1
    study.save()
    if isinstance(spec, str):
        device = chromium._impl_obj._browser_type._playwright.devices[spec]  # noqa: SLF001
        options = {k: v for k, v in device.items() if k != "default_browser_type"}
    else:
        options = spec
    context = chromium.new_context(**options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    touch = bool(options.get("has_touch"))
    violations = {}
    try:
        page.goto(f"{live_server.url}/s/{study.pk}/join")
        violations["consent"] = axe_serious(page)
        page.check("#agree")
        page.click("#consent-submit")
        violations["instructions"] = axe_serious(page)
        assert "a practice image first, then 1 image for the study (2 in all)" in page.inner_text(
            ".card"
        )
        page.click("#start")
        ui = Player(page, touch)

        # the practice image: said in the reserved message line, logged, then the real one
        practice = ui.open()
        assert practice.practice and practice.image.index == 2
        assert ui.data("practice") == "1"
        assert page.inner_text("#progress") == "Practice image"
        assert "Practice image — not part of the study's data" in page.inner_text("#banner")
        assert in_view(page, "#canvas-image") and in_view(page, "#banner")
        assert not text_cut(page, "#banner")
        before = (box(page, "#canvas-image"), box(page, ".ws-bar"))
        ui.click(landmarks(practice)["inside"])
        assert (box(page, "#canvas-image"), box(page, ".ws-bar")) == before
        assert "Practice image" in page.inner_text("#banner")  # it stays while practising
        assert status_clipped(page) == [] and status_clipped_while_waiting(page) == []
        violations["practice"] = axe_serious(page)
        screenshot(page, f"workspace_{name}_practice")
        finish_practice(page)
        assert list(practice.events.order_by("seq").values_list("action", flat=True)) == [
            "add",
            "finish",
        ]

        assignment = ui.open()
        assert not assignment.practice and assignment.image.index != 2
        assert page.inner_text("#progress") == "Image 1 of 1"
        assert "practice is over" in page.inner_text("#banner")
        spots = landmarks(assignment)
        assert in_view(page, "#canvas-image"), box(page, "#canvas-image")
        assert in_view(page, ".ws-bar"), box(page, ".ws-bar")
        assert page.evaluate("() => document.activeElement.id") == "canvas-image"
        before = (box(page, "#canvas-image"), box(page, ".ws-bar"))
        ui.click(spots["inside"])
        assert "Add 1 red point" in page.inner_text("#mask-note")
        page.click("#btn-red")
        ui.click(spots["outside"])
        after = (box(page, "#canvas-image"), box(page, ".ws-bar"))
        assert before == after, "the canvas or the tool bar moved on a click"
        event = PromptEvent.objects.get(assignment=assignment, timestep=0)
        from tests.prompting.test_browser_prompting import assert_overlay_matches_mask

        assert_overlay_matches_mask(ui, event)  # the mask is drawn on the image being clicked
        assert page.get_attribute("#app", "data-mask-source") == "server"
        assert status_clipped(page) == [] and status_clipped_while_waiting(page) == []
        violations["annotate"] = axe_serious(page)
        screenshot(page, f"workspace_{name}_annotate")

        # undo and redo are logged and restore the point sets
        seq = int(ui.data("seq"))
        page.click("#btn-undo")
        ui.wait_idle(seq + 1)
        assert (ui.data("green"), ui.data("red")) == ("1", "0")
        page.click("#btn-redo")
        ui.wait_idle(seq + 2)
        assert (ui.data("green"), ui.data("red"), ui.data("timesteps")) == ("1", "1", "2")

        # Enter never finishes the image unless Finish has focus: on the image it places a
        # green point at the keyboard cursor, on a tool button it presses that button
        seq = int(ui.data("seq"))
        page.click("#btn-clear")  # a tool button: the click clears, focus returns to the image
        ui.wait_idle(seq + 1)
        assert page.evaluate("() => document.activeElement.id") == "canvas-image"
        page.keyboard.press("Enter")
        ui.wait_idle(seq + 2)
        assert (ui.data("green"), ui.data("red")) == ("1", "0")
        page.focus("#btn-undo")
        page.keyboard.press("Enter")
        ui.wait_idle(seq + 3)
        assignment.refresh_from_db()
        assert assignment.status != "finished" and ui.data("green") == "0"
        assert not page.is_visible("#survey")
        page.focus("#finish")
        page.keyboard.press("Enter")  # the button meant for finishing asks first
        page.wait_for_selector("#confirm", state="visible")
        assert page.evaluate("() => document.activeElement.id") == "confirm-no"
        page.keyboard.press("Enter")  # the focused choice is "keep working"
        assert not page.is_visible("#confirm")
        assignment.refresh_from_db()
        assert assignment.status != "finished"

        page.click("#finish")
        page.click("#confirm-yes")
        page.wait_for_selector("#survey", state="visible")
        assert in_view(page, "#survey")
        assert page.evaluate("() => document.activeElement.closest('#survey') !== null")
        violations["survey"] = axe_serious(page)
        screenshot(page, f"workspace_{name}_survey")
        page.click("#survey-yes")
        page.wait_for_url("**/done")
        violations["done"] = axe_serious(page)
        screenshot(page, f"workspace_{name}_done")
        assert Assignment.objects.get(pk=assignment.pk).survey_answers["answer"] == "yes"
        actions = list(assignment.events.order_by("seq").values_list("action", flat=True))
        assert actions == ["add", "add", "undo", "redo", "clear", "add", "undo", "finish"]
    finally:
        context.close()
    assert errors == []
    assert violations == {k: [] for k in violations}, violations
