"""The prompting page with SAM's decoder in the browser (issue 14): a click draws the local
mask at once ("local"), the event carries what was shown, the server's answer replaces it
("server"), and the log keeps both: the server's timestep and the shown mask's hash and IoU."""

import pytest

from studies.models import PromptEvent
from tests.prompting.test_browser_decoder_api import sam_study
from tests.prompting.test_browser_prompting import Annotator, landmarks
from tests.static_server import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_click_draws_the_local_mask_then_the_servers_and_logs_what_was_shown(
    live_server, chromium, django_capture_on_commit_callbacks
):
    if not (ROOT / "static" / "vendor" / "onnxruntime-web" / "ort.wasm.min.mjs").is_file():
        pytest.fail("static/vendor lacks onnxruntime-web: run `make setup`")
    study, _ = sam_study(django_capture_on_commit_callbacks)
    study.participants.all().delete()
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(30_000)
    page = context.new_page()
    decoder_gets = []
    page.on("request", lambda r: decoder_gets.append(r.url) if "decoder.samdec" in r.url else None)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(
        """
        window.__sources = [];
        new MutationObserver(() => {
          const s = document.getElementById('app')?.dataset.maskSource;
          if (s && window.__sources[window.__sources.length - 1] !== s) window.__sources.push(s);
        }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-mask-source'] });
        """
    )
    try:
        page.goto(f"{live_server.url}/s/{study.pk}/join")
        page.check("#agree")
        page.click("#consent-submit")
        page.click("#start")
        ui = Annotator(page)
        assignment = ui.open()
        spots = landmarks(assignment)
        page.wait_for_function("() => document.getElementById('app').dataset.preview === 'ready'")
        ui.click(spots["inside"])
        page.click("#btn-red")
        page.evaluate("() => { window.__sources = []; }")
        ui.click(spots["outside"])
        page.wait_for_function(
            "() => document.getElementById('app').dataset.maskSource === 'server'"
        )
        sources = page.evaluate("() => window.__sources")
        # the page is cross-origin isolated (COOP + COEP), so the decoder runs on threads
        isolated = page.evaluate("() => globalThis.crossOriginIsolated")
        threads = page.evaluate("() => document.getElementById('app').dataset.previewThreads")
        cores = page.evaluate("() => navigator.hardwareConcurrency")
        # the next image reuses the loaded decoder: only its embedding is new
        page.click("#finish")
        page.click("#confirm-yes")
        page.click("#survey-yes")
        page.wait_for_function(
            "() => document.getElementById('progress').textContent === 'Image 2 of 2'"
        )
        second = ui.open()
        page.wait_for_function(
            f"() => document.getElementById('app').dataset.assignment === '{second.pk}'"
            " && document.getElementById('app').dataset.preview === 'ready'"
        )
        page.click("#btn-green")  # the tool stays red from the first image
        ui.click(landmarks(second)["inside"])
        page.click("#btn-red")  # the study wants a green and a red point before a mask
        ui.click(landmarks(second)["outside"])
        page.wait_for_function(
            "() => document.getElementById('app').dataset.maskSource === 'server'"
        )
    finally:
        context.close()
    assert errors == []
    assert isolated is True and threads == str(min(4, cores)), (isolated, threads, cores)
    assert len(decoder_gets) == 1, decoder_gets  # one model load for the whole study
    assert PromptEvent.objects.get(assignment=second, timestep=0).shown_mask_sha256
    assert sources[:2] == ["local", "server"], sources  # the local mask first, then the record
    event = PromptEvent.objects.get(assignment=assignment, timestep=0)
    assert event.shown_mask_sha256 and len(event.shown_mask_sha256) == 64
    assert event.shown_iou_vs_server is not None and event.shown_iou_vs_server > 0.99
    assert event.client_latency_ms is not None and event.client_latency_ms > 0
