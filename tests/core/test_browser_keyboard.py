"""Both participant tasks done with the keyboard alone (WCAG 2.1.1), in headless Chromium
against a live server: consent, instructions, a prompting image (the arrows move a cursor,
Enter places a green point, Shift+Enter a red one, Delete removes one) and an intervention
image (a rectangle, a brush stroke and a polygon drawn with the cursor), finishing and the
survey. Buttons act on Enter and Space like any button (Space on a focused tool button no
longer clears the points), no shortcut fires while a control has focus, and the log says which
input placed each point."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studies.models import Assignment, InterventionTrial, PromptEvent
from tests.browser_support import screenshot
from tests.factories import prompting_study
from tests.intervention_fixtures import (
    DEMO_WEIGHTS,
    classifier_spec,
    intervention_study,
    random_demo_weights,
)
from tests.prompting.test_browser_prompting import Annotator, landmarks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def focused(page) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


def tab_to(page, element_id: str, limit: int = 60, back: bool = False) -> None:
    """Press Tab (Shift+Tab with `back`) until the element has focus."""
    for _ in range(limit):
        if focused(page) == element_id:
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"the keyboard never reached #{element_id} (at #{focused(page)})")


def cursor(page) -> tuple[int, int] | None:
    value = page.get_attribute("#app", "data-cursor")
    return tuple(int(v) for v in value.split(",")) if value else None


def steer(page, canvas: str, width: int, target) -> None:
    """Move the keyboard cursor onto image pixel `target`: coarse steps, then Shift+arrows."""
    css_per_pixel = page.eval_on_selector(canvas, "c => c.getBoundingClientRect().width") / width
    coarse = max(1, round(16 / css_per_pixel))
    if cursor(page) is None:
        page.keyboard.press("Shift+ArrowLeft")
        page.keyboard.press("Shift+ArrowRight")
    for _ in range(400):
        x, y = cursor(page)
        dx, dy = target[0] - x, target[1] - y
        if (dx, dy) == (0, 0):
            return
        if dx:
            key = "ArrowRight" if dx > 0 else "ArrowLeft"
            page.keyboard.press(key if abs(dx) >= coarse else f"Shift+{key}")
        else:
            key = "ArrowDown" if dy > 0 else "ArrowUp"
            page.keyboard.press(key if abs(dy) >= coarse else f"Shift+{key}")
    raise AssertionError(f"the cursor did not reach {target} (at {cursor(page)})")


def consent_and_start(page, url: str) -> None:
    page.goto(url)
    tab_to(page, "agree")
    page.keyboard.press("Space")
    assert page.is_checked("#agree")
    tab_to(page, "consent-submit")
    page.keyboard.press("Enter")
    page.wait_for_url("**/instructions")
    tab_to(page, "start")
    page.keyboard.press("Enter")
    page.wait_for_selector("#app[data-phase=annotate]")


def finish_with_keys(page) -> None:
    tab_to(page, "finish")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm", state="visible")
    assert focused(page) == "confirm-no"
    page.keyboard.press("Shift+Tab")
    assert focused(page) == "confirm-yes"
    page.keyboard.press("Enter")
    page.wait_for_selector("#survey", state="visible")
    assert focused(page) == "survey-yes"
    page.keyboard.press("Enter")


def ring_pixel(page, canvas: str, xy, width: int) -> list[int]:
    """The canvas pixel 10 CSS px right of image pixel `xy`'s centre: on the cursor's ring."""
    return page.evaluate(
        """([id, x, y, w]) => { const c = document.getElementById(id);
        const k = c.width / c.getBoundingClientRect().width, s = c.width / w;
        return Array.from(c.getContext('2d').getImageData(Math.floor((x + .5) * s + 10 * k),
          Math.floor((y + .5) * s), 1, 1).data); }""",
        [canvas, xy[0], xy[1], width],
    )


def test_a_prompting_image_with_the_keyboard_alone(live_server, new_page):
    study = prompting_study(n_images=1, participants=1)
    participant = study.participants.get()
    page = new_page((1280, 720))
    consent_and_start(page, f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
    ui = Annotator(page)
    assignment = ui.open()
    spots = landmarks(assignment)
    w = assignment.image.width
    assert focused(page) == "canvas-image"

    # the arrows move a cursor, drawn on the image and said through the live region
    steer(page, "#canvas-image", w, spots["inside"])
    # (announce() clears the live region and sets it on the next animation frame, so wait for it)
    page.wait_for_function(
        "() => document.getElementById('announce').textContent.includes('Cursor at x')"
    )
    assert max(ring_pixel(page, "canvas-image", spots["inside"], w)[:3]) < 90  # the black ring
    page.keyboard.press("Enter")  # a green point at the cursor
    ui.wait_idle(1)
    assert ui.data("green") == "1"
    steer(page, "#canvas-image", w, spots["outside"])
    page.keyboard.press("Shift+Enter")  # a red one
    ui.wait_idle(2)
    assert (ui.data("red"), ui.data("timesteps"), ui.data("mode")) == ("1", "1", "red")
    page.wait_for_function("() => document.getElementById('announce').textContent.includes('mask')")
    screenshot(page, "keyboard_prompting_points")
    page.keyboard.press("Delete")  # removes the nearest red point
    ui.wait_idle(3)
    assert ui.data("red") == "0"

    # tool buttons: Space and Enter press them like any button; Space clears nothing
    tab_to(page, "btn-green")
    page.keyboard.press("Space")
    assert ui.data("mode") == "green" and focused(page) == "canvas-image"
    tab_to(page, "btn-red")
    page.keyboard.press("Enter")
    assert ui.data("mode") == "red"
    tab_to(page, "btn-undo")
    page.keyboard.press("Enter")  # undo brings the red point back
    ui.wait_idle(4)
    assert ui.data("red") == "1"
    # no shortcut fires while a control has focus: g on the opacity slider changes no colour
    tab_to(page, "opacity")
    value = page.input_value("#opacity")
    page.keyboard.press("g")
    page.keyboard.press("ArrowLeft")  # the slider's own key
    assert ui.data("mode") == "red" and page.input_value("#opacity") != value
    page.keyboard.press("Space")
    page.wait_for_timeout(200)
    assert ui.data("seq") == "4" and ui.data("red") == "1"
    # a held Enter (key repeats) places one point, not one per repeat
    page.focus("#canvas-image")
    page.keyboard.down("Enter")
    page.keyboard.down("Enter")
    page.keyboard.down("Enter")
    page.keyboard.up("Enter")
    ui.wait_idle(5)
    page.wait_for_timeout(200)
    assert ui.data("seq") == "5"

    finish_with_keys(page)
    page.wait_for_url("**/done")
    assert not page.errors, page.errors
    logged = list(
        PromptEvent.objects.filter(assignment=assignment)
        .order_by("seq")
        .values_list("action", "mode", "input", "x", "y")
    )
    inside, outside = spots["inside"], spots["outside"]
    assert logged[:3] == [
        ("add", "green", "keyboard", *map(float, inside)),
        ("add", "red", "keyboard", *map(float, outside)),
        ("remove", "red", "keyboard", *map(float, outside)),
    ]
    assert [row[0] for row in logged[3:]] == ["undo", "add", "finish"]
    a = Assignment.objects.get(pk=assignment.pk)
    assert a.status == "finished" and a.survey_answers["answer"] == "yes"


def test_an_intervention_image_with_the_keyboard_alone(live_server, new_page, tmp_path):
    weights = DEMO_WEIGHTS if DEMO_WEIGHTS.is_file() else random_demo_weights(tmp_path)
    study = intervention_study(classifier_spec(weights), n_images=1)
    participant = study.participants.get()
    assignment = participant.assignments.select_related("image").get()
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    ys, xs = np.nonzero(gt)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    w = assignment.image.width
    page = new_page((1280, 720))
    consent_and_start(page, f"{live_server.url}/s/{study.pk}/join?t={participant.token}")
    area = lambda: int(page.get_attribute("#app", "data-area"))  # noqa: E731
    trials = lambda n: page.wait_for_function(  # noqa: E731
        "n => { const a = document.getElementById('app'); return a.dataset.trials === String(n) && a.dataset.busy === '0'; }",
        arg=n,
    )
    assert focused(page) == "canvas-paint"

    # a rectangle: Enter at one corner, the arrows, Enter at the opposite corner
    page.keyboard.press("x")
    steer(page, "#canvas-paint", w, (x0, y0))
    page.keyboard.press("Enter")
    assert page.get_attribute("#app", "data-pen") == "corner"
    steer(page, "#canvas-paint", w, (x1, y1))
    screenshot(page, "keyboard_intervention_rectangle")
    page.keyboard.press("Enter")
    assert area() == (x1 - x0 + 1) * (y1 - y0 + 1)
    page.keyboard.press("a")
    trials(1)

    # a brush stroke: Enter puts the brush down, the arrows paint, Enter lifts it
    page.keyboard.press("b")
    before = area()
    steer(page, "#canvas-paint", w, (2, 2))
    page.keyboard.press("Enter")
    for _ in range(6):
        page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Enter")
    assert area() > before and page.get_attribute("#app", "data-pen") == ""
    # a polygon: Enter places each corner, Shift+Enter closes it
    page.keyboard.press("p")
    before = area()
    for corner in [(w - 3, 2), (w - 3, 14), (w - 15, 2)]:
        steer(page, "#canvas-paint", w, corner)
        page.keyboard.press("Enter")
    page.keyboard.press("Shift+Enter")
    assert area() > before

    # buttons act on Enter and Space; Space on a tool button clears nothing
    painted = area()
    tab_to(page, "tool-rect")
    page.keyboard.press("Enter")
    assert page.get_attribute("#app", "data-tool") == "rect" and focused(page) == "canvas-paint"
    tab_to(page, "tool-brush")
    page.keyboard.press("Space")
    assert page.get_attribute("#app", "data-tool") == "brush" and area() == painted
    # the operation's radio buttons take the arrows; a (apply) does nothing while they have focus
    tab_to(page, "op-delete")
    page.keyboard.press("ArrowRight")
    assert page.is_checked("#op-insert")
    page.keyboard.press("a")
    page.wait_for_timeout(300)
    assert page.get_attribute("#app", "data-trials") == "1"
    tab_to(page, "apply")
    page.keyboard.press("Enter")
    trials(2)
    screenshot(page, "keyboard_intervention_applied")

    finish_with_keys(page)
    page.wait_for_url(f"**/s/{study.pk}/done")
    assert not page.errors, page.errors
    logged = list(
        InterventionTrial.objects.filter(assignment=assignment)
        .order_by("seq")
        .values_list("operation", "input")
    )
    assert logged == [("delete", "keyboard"), ("insert", "keyboard")]
