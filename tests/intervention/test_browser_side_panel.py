"""The intervention page as a participant reads it, at 1280x720, 1920x1080 and 800 wide: the
prediction, what the model sees, the explanation and the trials all show in the side without
scrolling it; the top-5 table shows no "<0.102" values; "Finish image" stays with the tools;
each new image starts with the brush and Delete, and its side at the top.
Screenshots: tests/artifacts/intervention_side_*.png."""

from __future__ import annotations

import pytest

from tests.browser_support import screenshot
from tests.intervention.test_browser_intervention import Page, weights
from tests.intervention_fixtures import classifier_spec, intervention_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIDE = """() => {
  const side = document.querySelector('.ws-side'), box = side.getBoundingClientRect();
  const inside = (id) => { const r = document.getElementById(id).getBoundingClientRect();
    return r.width > 0 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.bottom <= innerHeight + 1; };
  return { scrolls: side.scrollHeight > side.clientHeight + 1,
    shown: ['panel-prediction', 'canvas-result', 'canvas-overlay', 'history-box'].filter(inside),
    overlay: document.getElementById('canvas-overlay').getBoundingClientRect().width };
}"""

FINISH_WITH_TOOLS = """() => {
  const finish = document.getElementById('finish').getBoundingClientRect();
  const row = [...document.querySelectorAll('.ws-bar > *')].filter((e) => e.id !== 'finish'
    && !e.classList.contains('spacer')).map((e) => e.getBoundingClientRect())
    .filter((r) => r.width && Math.abs(r.top + r.height / 2 - finish.top - finish.height / 2) < 12
      && r.right <= finish.left + 1);
  return row.length ? finish.left - Math.max(...row.map((r) => r.right)) : null;
}"""


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (800, 1000)], ids=str)
def test_the_side_shows_everything_and_each_image_starts_afresh(
    live_server, new_page, tmp_path, size
):
    study = intervention_study(classifier_spec(weights(tmp_path)), n_images=2, overlay="gradcam")
    participant = study.participants.get()
    page = new_page(size)
    page.goto(f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
    page.check("#agree")
    page.click("#consent-submit")
    page.click("#start")
    page.wait_for_selector("#app[data-phase=annotate]")
    p = Page(page)
    w, h = int(p.data("width")), int(p.data("height"))
    page.click("#tool-rect")
    p.drag((w // 4, h // 4), (w // 2, h // 2))
    page.check("#op-insert")
    for n in range(1, 5):  # a few trials: the list grows, the side does not scroll
        page.click("#apply")
        p.wait_trials(n)
    assert "<" not in page.inner_text("#top5")
    assert "not in top 5" in page.inner_text("#top5") or page.locator("#top5 tbody tr").count() == 5
    gap = page.evaluate(FINISH_WITH_TOOLS)
    assert gap is not None and gap < 40, gap  # next to the tool before it, on the same row
    name = f"{size[0]}x{size[1]}"
    screenshot(page, f"intervention_side_{name}")
    side = page.evaluate(SIDE)
    if size[0] > 900:
        assert not side["scrolls"], side
        assert side["shown"] == [
            "panel-prediction",
            "canvas-result",
            "canvas-overlay",
            "history-box",
        ]
        assert side["overlay"] >= 120, side
    # scroll the side's panels (a narrow screen scrolls them), then the next image
    page.evaluate(
        "() => [document.querySelector('.ws-side'), ...document.querySelectorAll('.ws-side > *')]"
        ".forEach((e) => { e.scrollTop = 10000; })"
    )
    first = p.data("assignment")
    page.click("#finish")
    page.click("#confirm-yes")
    page.click("#survey-yes")
    page.wait_for_function(
        "a => { const d = document.getElementById('app').dataset;"
        " return d.phase === 'annotate' && d.assignment !== a; }",
        arg=first,
    )
    assert p.data("tool") == "brush" and page.is_checked("#op-delete")
    assert page.evaluate(
        "() => [document.querySelector('.ws-side'), ...document.querySelectorAll('.ws-side > *')]"
        ".every((e) => e.scrollTop === 0)"
    )
    screenshot(page, f"intervention_side_{name}_next")
    assert not page.errors, page.errors
