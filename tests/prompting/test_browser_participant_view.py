"""What the prompting participant sees while the model answers and on small objects, in
headless Chromium: a pending point is drawn in black and white as well as its colour (visible
on any image), "Waiting for the model…" is shown on the image, clicks made while an answer is
slow survive a reload (sent again, stored once, the participant told), ring markers let the
pixels under a point show, and no question about the mask is asked after an image where the
model showed none. Screenshots: tests/artifacts/participant_view_*.png."""

from __future__ import annotations

import pytest

from studies.models import Assignment, PromptEvent
from tests.browser_support import screenshot
from tests.factories import prompting_study
from tests.prompting.test_browser_prompting import Annotator, landmarks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EVENTS = "**/api/v1/assignments/*/events"

RING = """([x, y, w]) => { const c = document.getElementById('canvas-image');
  const k = c.width / c.getBoundingClientRect().width, s = c.width / w;
  const cx = (x + .5) * s, cy = (y + .5) * s, ctx = c.getContext('2d');
  let dark = 0, light = 0;
  for (let r = 5 * k; r <= 13 * k; r += k) for (let t = 0; t < 2 * Math.PI; t += Math.PI / 24) {
    const p = ctx.getImageData(Math.round(cx + r * Math.cos(t)), Math.round(cy + r * Math.sin(t)), 1, 1).data;
    if (p[0] < 50 && p[1] < 50 && p[2] < 50) dark++;
    if (p[0] > 215 && p[1] > 215 && p[2] > 215) light++;
  }
  return [dark, light]; }"""

RAW_PIXEL = """async ([id, x, y]) => { const img = new Image(); img.src = `/api/v1/assignments/${id}/image`;
  await img.decode(); const c = document.createElement('canvas'); c.width = img.naturalWidth;
  c.height = img.naturalHeight; const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(x, y, 1, 1).data); }"""


def start(page, live_server, study):
    participant = study.participants.get()
    page.goto(f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
    page.check("#agree")
    page.click("#consent-submit")
    page.click("#start")
    ui = Annotator(page)
    return ui, ui.open()


def click_at(ui: Annotator, xy) -> None:
    s = ui.scale()
    ui.page.locator("#canvas-image").click(
        position={"x": (xy[0] + 0.5) * s, "y": (xy[1] + 0.5) * s}
    )


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (800, 1000)], ids=str)
def test_pending_points_show_and_survive_a_reload(live_server, new_page, size):
    study = prompting_study(n_images=1, participants=1)
    page = new_page(size)
    ui, assignment = start(page, live_server, study)
    spots = landmarks(assignment)
    held, hold = [], [True]
    # the model is slow: no answer yet (held requests stay unanswered until the reload)
    page.route(EVENTS, lambda route: held.append(route) if hold[0] else route.continue_())
    click_at(ui, spots["inside"])
    page.keyboard.press("r")
    click_at(ui, spots["outside"])
    page.wait_for_function("() => document.getElementById('app').dataset.queue === '2'")
    # the waiting notice is on the image, where the participant looks (once the wait is long)
    page.wait_for_selector("#stage-wait", state="visible")
    wait, canvas = page.locator("#stage-wait"), page.locator("#canvas-image").bounding_box()
    assert wait.is_visible() and wait.inner_text().startswith("Waiting for the model")
    w = wait.bounding_box()
    assert canvas["x"] <= w["x"] + w["width"] / 2 <= canvas["x"] + canvas["width"]
    assert canvas["y"] - 4 <= w["y"] <= canvas["y"] + canvas["height"] / 3
    # each pending point has black and white on its ring, whatever colours the image has
    for xy in (spots["inside"], spots["outside"]):
        dark, light = page.evaluate(RING, [*xy, assignment.image.width])
        assert dark >= 10 and light >= 10, (xy, dark, light)
    screenshot(page, f"participant_view_pending_{size[0]}x{size[1]}")

    hold[0] = False
    page.reload()  # both clicks were not answered: they are kept and sent again
    # the page sends the kept actions at once: wait for it before reading the database (SQLite
    # locks the tables while the live server writes)
    page.wait_for_function(
        "a => { const d = document.getElementById('app').dataset;"
        " return d.phase === 'annotate' && d.assignment === a; }",
        arg=str(assignment.pk),
    )
    ui.wait_idle(2)
    assert "2 actions made before the page reloaded were kept" in page.inner_text("#banner")
    assert not page.locator("#stage-wait").is_visible()
    logged = list(
        PromptEvent.objects.filter(assignment=assignment)
        .order_by("seq")
        .values_list("action", "mode", "x", "y")
    )
    assert logged == [
        ("add", "green", *map(float, spots["inside"])),
        ("add", "red", *map(float, spots["outside"])),
    ]
    assert ui.data("timesteps") == "1"
    assert not page.errors, page.errors


def test_ring_markers_show_the_pixels_under_a_point(live_server, new_page):
    study = prompting_study(n_images=1, participants=1)
    page = new_page((1280, 720))
    ui, assignment = start(page, live_server, study)
    spot = landmarks(assignment)["inside"]
    ui.click(spot)
    raw = page.evaluate(RAW_PIXEL, [assignment.pk, *spot])
    filled = ui.pixel("canvas-image", spot)
    assert filled != raw  # the filled marker hides the pixel
    page.keyboard.press("v")
    assert page.get_attribute("#btn-markers", "aria-pressed") == "true"
    assert ui.pixel("canvas-image", spot) == raw  # through the ring: the image's own pixel
    screenshot(page, "participant_view_rings")
    page.click("#btn-markers")
    assert ui.pixel("canvas-image", spot) == filled


def test_no_question_after_an_image_where_no_mask_was_shown(live_server, new_page):
    study = prompting_study(n_images=2, participants=1)
    page = new_page((1280, 720))
    ui, first = start(page, live_server, study)
    ui.click(landmarks(first)["inside"])  # one green point: no mask yet (a red one is needed)
    assert ui.data("timesteps") == "0"
    page.click("#finish")
    page.click("#confirm-yes")
    page.wait_for_function(
        "a => { const d = document.getElementById('app').dataset;"
        " return d.phase === 'annotate' && d.assignment !== a; }",
        arg=str(first.pk),
    )
    assert not page.locator("#survey").is_visible()
    answers = Assignment.objects.get(pk=first.pk).survey_answers
    assert answers["answer"] == "not asked" and "no mask" in answers["reason"]
    # after an image with a mask, the question is asked as before
    second = Assignment.objects.get(pk=int(ui.data("assignment")))
    spots = landmarks(second)
    ui.click(spots["inside"])
    ui.key("r")
    ui.click(spots["outside"])
    page.click("#finish")
    page.click("#confirm-yes")
    page.wait_for_selector("#survey", state="visible")
    assert not page.errors, page.errors
