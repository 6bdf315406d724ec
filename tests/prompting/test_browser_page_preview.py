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
    finally:
        context.close()
    assert errors == []
    assert sources[:2] == ["local", "server"], sources  # the local mask first, then the record
    event = PromptEvent.objects.get(assignment=assignment, timestep=0)
    assert event.shown_mask_sha256 and len(event.shown_mask_sha256) == 64
    assert event.shown_iou_vs_server is not None and event.shown_iou_vs_server > 0.99
    assert event.client_latency_ms is not None and event.client_latency_ms > 0
