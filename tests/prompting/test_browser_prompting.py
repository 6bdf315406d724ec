"""The prompting study in headless Chromium against a live server (eager Celery, classical
backend, SQLite): an annotator's whole session, and a researcher's set-up, monitoring and replay.
Screenshots of every page go to tests/artifacts/."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from interventions.metrics import rle_decode
from studies.models import Assignment, PromptEvent, Study
from tests.browser_support import screenshot
from tests.factories import classical_spec, prompting_study, researcher, small_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def landmarks(assignment: Assignment) -> dict:
    """Pixels (x, y) deep inside the ground truth, farthest from it, and the image corners."""
    gt = np.asarray(Image.open(assignment.image.mask.path)) > 127
    inside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(gt)), gt.shape)
    outside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(~gt)), gt.shape)
    h, w = gt.shape
    corners = [(2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3)]
    corners = [c for c in corners if not gt[c[1], c[0]]]
    return {
        "inside": (int(inside[1]), int(inside[0])),
        "outside": (int(outside[1]), int(outside[0])),
        "corners": corners,
    }


class Annotator:
    """Drives the annotation page: clicks in image pixels, waits for the server's answers."""

    def __init__(self, page):
        self.page = page

    @property
    def app(self):
        return self.page.locator("#app")

    def data(self, name: str) -> str:
        return self.app.get_attribute(f"data-{name}")

    def wait_idle(self, seq: int) -> None:
        self.page.wait_for_function(
            "seq => { const a = document.getElementById('app'); return a.dataset.seq === String(seq) && a.dataset.queue === '0' && a.dataset.busy === '0'; }",
            arg=seq,
        )

    def scale(self) -> float:
        return (
            self.page.evaluate(
                "() => { const c = document.getElementById('canvas-image'); return c.getBoundingClientRect().width; }"
            )
            / self.width
        )

    def open(self) -> Assignment:
        self.page.wait_for_function(
            "() => document.getElementById('app').dataset.phase === 'annotate'"
        )
        assignment = Assignment.objects.select_related("image").get(pk=int(self.data("assignment")))
        self.width = assignment.image.width
        return assignment

    def click(self, xy, *, right: bool = False, expect_seq: int | None = None) -> None:
        s = self.scale()
        seq = int(self.data("seq"))
        self.page.locator("#canvas-image").click(
            position={"x": (xy[0] + 0.5) * s, "y": (xy[1] + 0.5) * s},
            button="right" if right else "left",
        )
        self.wait_idle(seq + 1 if expect_seq is None else expect_seq)

    def key(self, key: str) -> None:
        self.page.keyboard.press(key)

    def pixel(self, canvas: str, xy) -> list[int]:
        return self.page.evaluate(
            "([id, x, y, w]) => { const c = document.getElementById(id); const s = c.width / w;"
            " return Array.from(c.getContext('2d').getImageData(Math.floor((x + .5) * s), Math.floor((y + .5) * s), 1, 1).data); }",
            [canvas, xy[0], xy[1], self.width],
        )


def far_from(points, mask: np.ndarray, value: bool, margin: int = 6):
    """A pixel where the mask equals `value`, at least `margin` pixels from every point."""
    ys, xs = np.nonzero(mask == value)
    for x, y in zip(xs, ys, strict=True):
        if all(abs(int(x) - px) > margin or abs(int(y) - py) > margin for px, py in points):
            return int(x), int(y)
    raise AssertionError("no pixel far from the points")


def assert_overlay_matches_mask(annotator: Annotator, event: PromptEvent) -> None:
    """The image being clicked is tinted exactly where the predicted mask is: inside, hiding the
    mask (key m) changes the pixel; outside it does not."""
    mask = rle_decode(event.mask_rle).astype(bool)
    points = [*event.green, *event.red]
    inside, outside = far_from(points, mask, True), far_from(points, mask, False)
    with_mask = [annotator.pixel("canvas-image", p)[:3] for p in (inside, outside)]
    annotator.key("m")
    bare = [annotator.pixel("canvas-image", p)[:3] for p in (inside, outside)]
    annotator.key("m")
    assert with_mask[0] != bare[0] and with_mask[1] == bare[1]


def test_annotator_session_from_join_link_to_completion(live_server, new_page):
    study = prompting_study(n_images=3, participants=0, stagnation_limit=2)
    study.images_per_participant = 2
    study.instructions = "Put green points on the shape and red points on the background."
    study.completion_code = "THANKS-123"
    study.completion_url = f"{live_server.url}/accounts/login/?returned=crowd"
    study.save()
    page = new_page()

    page.goto(f"{live_server.url}/s/{study.pk}/join")
    assert "/consent" in page.url
    screenshot(page, "participant_1_consent")
    page.click("#consent-submit")  # without ticking the box: refused, nothing recorded
    assert "tick the box" in page.inner_text("#consent-error")
    page.check("#agree")
    page.click("#consent-submit")
    assert "/instructions" in page.url and "Put green points" in page.inner_text(
        "#instructions-text"
    )
    screenshot(page, "participant_2_instructions")
    page.click("#start")

    ui = Annotator(page)
    first = ui.open()
    spots = landmarks(first)
    assert (
        page.inner_text("#progress") == "Image 1 of 2"
        and page.inner_text("#round") == "Round 1 of 2"
    )
    assert "GREEN" in page.inner_text("#mode")
    ui.click(spots["inside"])
    assert ui.data("green") == "1" and ui.data("timesteps") == "0"
    assert "Add 1 red point" in page.inner_text("#mask-note")
    ui.key("r")
    assert "RED" in page.inner_text("#mode") and ui.data("mode") == "red"
    ui.click(spots["outside"])
    assert ui.data("timesteps") == "1"
    t0 = PromptEvent.objects.get(assignment=first, timestep=0)
    assert t0.input == "pointer"  # clicked with the mouse
    assert page.inner_text("#score") == f"{t0.iou:.3f}" and t0.iou > 0.5
    assert_overlay_matches_mask(ui, t0)
    # the ground-truth panel tints the ground truth
    gt = np.asarray(Image.open(first.image.mask.path)) > 127
    g_in = far_from([*t0.green, *t0.red], gt, True)
    assert (
        ui.pixel("canvas-gt", g_in)[:3]
        != ui.pixel("canvas-gt", far_from([*t0.green, *t0.red], gt, False))[:3]
    )
    screenshot(page, "participant_3_annotate")

    # re-opening the page resumes: points, round and the last mask come from the server
    page.reload()
    assert ui.open().pk == first.pk
    assert (ui.data("seq"), ui.data("green"), ui.data("red"), ui.data("timesteps")) == (
        "2",
        "1",
        "1",
        "1",
    )
    assert page.inner_text("#score") == f"{t0.iou:.3f}"
    assert_overlay_matches_mask(ui, t0)
    ui.key("r")

    # right click removes the nearest red point (the server picks it); no prediction is due
    ui.click((spots["outside"][0] + 2, spots["outside"][1] + 1), right=True)
    assert (
        ui.data("red") == "0" and ui.data("timesteps") == "1" and page.inner_text("#score") == "–"
    )

    # a failed request is retried with the same client_event_id and seq, and stored once
    sent = []

    def flaky(route):
        sent.append(json.loads(route.request.post_data))
        if len(sent) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/assignments/*/events", flaky)
    ui.click(spots["outside"])
    page.unroute("**/api/v1/assignments/*/events")
    assert len(sent) == 2 and sent[0] == sent[1]
    assert (
        PromptEvent.objects.filter(
            assignment=first, client_event_id=sent[0]["client_event_id"]
        ).count()
        == 1
    )
    assert ui.data("timesteps") == "2" and ui.data("red") == "1"

    # a request that keeps failing is reported after the retries, the action is kept as
    # pending, and Retry sends the very same event again; here: space clears all points
    attempts = []

    def down(route):
        attempts.append(json.loads(route.request.post_data))
        route.fulfill(status=503, json={"error": "the prediction service is unavailable"})

    page.route("**/api/v1/assignments/*/events", down)
    seq = int(ui.data("seq"))
    page.keyboard.press(" ")
    page.wait_for_selector("#error", state="visible", timeout=20_000)
    assert "prediction service is unavailable" in page.inner_text("#error-text")
    assert "Not saved yet" in page.inner_text("#pending") and ui.data("queue") == "1"
    assert (
        len(attempts) == 5 and all(a == attempts[0] for a in attempts) and attempts[0]["seq"] == seq
    )
    screenshot(page, "participant_3b_error")
    page.unroute("**/api/v1/assignments/*/events")
    page.click("#retry")
    ui.wait_idle(seq + 1)
    assert not page.is_visible("#error") and attempts[0]["action"] == "clear"
    assert (ui.data("green"), ui.data("red"), ui.data("round")) == ("0", "0", "1")
    assert (
        PromptEvent.objects.get(assignment=first, seq=seq).client_event_id
        == attempts[0]["client_event_id"]
    )

    # g / r switch the mode; red points in empty corners do not improve: the round resets
    ui.key("g")
    ui.click(spots["inside"])
    ui.key("r")
    for step in range(12):
        ui.click(spots["corners"][step % len(spots["corners"])] if step else spots["outside"])
        if page.is_visible("#banner.reset"):
            break
    assert page.is_visible("#banner.reset"), "the round never reset"
    assert "round 2 of 2 starts" in page.inner_text("#banner")
    assert page.inner_text("#round") == "Round 2 of 2" and (ui.data("green"), ui.data("red")) == (
        "0",
        "0",
    )
    screenshot(page, "participant_4_round_reset")
    ended = PromptEvent.objects.filter(assignment=first, round_ended=True).get()
    assert ended.round == 1 and ended.stagnation == 1

    ui.key("g")
    ui.click(spots["inside"])
    ui.key("r")
    ui.click(spots["outside"])
    assert not page.is_visible("#banner.reset")  # the notice goes with the new round's first mask
    page.click("#finish")
    page.wait_for_selector("#confirm", state="visible")  # finishing asks first
    assert not page.is_visible("#survey")
    page.click("#confirm-yes")
    page.wait_for_selector("#survey", state="visible")
    assert study.survey_question in page.inner_text("#survey-question")
    screenshot(page, "participant_5_survey")
    page.click("#survey-yes")

    # the second image: automatic end through stagnation in both rounds
    page.wait_for_function(
        "() => document.getElementById('progress').textContent === 'Image 2 of 2'"
    )
    second = ui.open()
    assert second.pk != first.pk and second.order == 1
    spots = landmarks(second)
    clicks = 0
    while not page.is_visible("#survey") and clicks < 40:
        if ui.data("green") == "0":
            ui.key("g")
            ui.click(spots["inside"])
            ui.key("r")
            ui.click(spots["outside"])
        else:
            ui.click(spots["corners"][clicks % len(spots["corners"])])
        clicks += 1
    page.wait_for_selector("#survey", state="visible")
    assert "without further improvement" in page.inner_text("#banner")
    page.click("#survey-no")

    page.wait_for_url(re.compile(r".*/s/\d+/done$"))
    assert page.inner_text("#completion-code") == "THANKS-123"
    screenshot(page, "participant_6_done")
    page.wait_for_url(re.compile(r".*returned=crowd"), timeout=12_000)  # back to the crowd platform
    assert page.errors == []

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.stop_reason, first.survey_answers["answer"]) == (
        "finished",
        "finished",
        "yes",
    )
    assert (second.status, second.stop_reason, second.survey_answers["answer"]) == (
        "finished",
        "stagnation",
        "no",
    )
    for a in (first, second):
        events = list(a.events.order_by("seq"))
        assert [e.seq for e in events] == list(range(len(events)))
        assert len({e.client_event_id for e in events}) == len(events)
    actions = list(first.events.order_by("seq").values_list("action", flat=True))
    assert actions[:5] == ["add", "add", "remove", "add", "clear"] and actions[-1] == "finish"
    assert first.participant.completed_at is not None


def test_researcher_creates_study_links_progress_and_replay(live_server, new_page):
    small_dataset(n=3)
    spec = classical_spec()
    owner = researcher("alice")
    r = new_page()
    r.goto(f"{live_server.url}/studies/")
    assert "/accounts/login/" in r.url
    screenshot(r, "researcher_1_login")
    r.fill("#id_username", "alice")
    r.fill("#id_password", "pw-alice")
    r.click("#login-submit")
    r.wait_for_selector("#no-studies")
    r.click("#new-study")
    r.fill("#id_title", "Hidden score study")
    r.select_option("#id_dataset", label="Clean shapes")
    r.select_option("#id_model", value=str(spec.pk))
    r.fill("#id_images_per_participant", "1")
    r.fill("#id_survey_question", "Was the ground truth worse than the model?")
    r.uncheck("#id_protocol_show_score")
    r.uncheck("#id_protocol_show_ground_truth")
    r.fill("#id_protocol_stagnation_limit", "0")
    r.click("#save-study")
    assert "stagnation_limit must be an integer >= 1" in r.inner_text("#form-errors")
    r.fill("#id_protocol_stagnation_limit", "3")
    screenshot(r, "researcher_2_create")
    r.click("#save-study")
    study = Study.objects.get(title="Hidden score study")
    assert (
        study.owner == owner
        and study.protocol["show_score"] is False
        and study.protocol["stagnation_limit"] == 3
    )
    r.click("#open-study")
    assert r.inner_text("#study-status") == "Open"
    assert (
        r.inner_text("#precompute-status") == "Done"
        and r.inner_text("#precompute-count") == "3 / 3"
    )
    r.fill("#id_count", "2")
    r.click("#generate-links")
    links = r.locator(".participant-link").all_inner_texts()
    assert len(links) == 2 and all("/join?t=" in link for link in links)
    screenshot(r, "researcher_3_study")

    # a participant follows the first link; the study hides the score and the ground truth
    p = new_page()
    p.goto(links[0])
    p.check("#agree")
    p.click("#consent-submit")
    p.click("#start")
    ui = Annotator(p)
    assignment = ui.open()
    assert p.locator("#canvas-gt").count() == 0 and p.locator("#score").count() == 0
    spots = landmarks(assignment)
    ui.click(spots["inside"])
    ui.key("r")
    ui.click(spots["outside"])
    ui.click(spots["corners"][0])
    assert ui.data("timesteps") == "2" and "Score hidden" in p.inner_text("#mask-note")
    assert_overlay_matches_mask(ui, PromptEvent.objects.get(assignment=assignment, timestep=1))
    screenshot(p, "participant_hidden_score")

    # the researcher's page updates by itself (polling), with the best IoU
    best = max(
        PromptEvent.objects.filter(assignment=assignment)
        .exclude(iou=None)
        .values_list("iou", flat=True)
    )
    row = r.locator('#participant-table tr[data-code="st1"]')
    row.get_by_text("in progress").wait_for(timeout=10_000)
    assert f"{best:.3f}" in row.inner_text()
    assert r.locator("#image-table tr").filter(has_text=f"{best:.3f}").count() == 1
    screenshot(r, "researcher_4_progress")

    row.locator("a.replay-link").first.click()
    r.wait_for_selector("#replay[data-ready='1']")
    assert r.inner_text("#ev-seq") == "3 of 3" and r.inner_text("#ev-timestep") == "1"
    assert (
        r.inner_text("#ev-iou")
        == f"{PromptEvent.objects.get(assignment=assignment, timestep=1).iou:.3f}"
    )
    r.focus("#scrub")
    r.keyboard.press("Home")
    assert r.inner_text("#ev-seq") == "1 of 3" and "no prediction" in r.inner_text("#ev-timestep")
    assert r.inner_text("#ev-points") == "1 green, 0 red"
    r.keyboard.press("ArrowRight")
    assert r.inner_text("#ev-timestep") == "0" and r.inner_text("#ev-points") == "1 green, 1 red"
    screenshot(r, "researcher_5_replay")
    assert r.errors == [] and p.errors == []
