"""The prompting page with SAM's decoder in the browser (issue 14): a click sends its event at
once and draws the local mask meanwhile ("local"); the server's answer replaces it ("server");
then what was shown follows the answer, and the log keeps both: the server's timestep and the
shown mask's hash and IoU."""

import json
import time

import pytest

from studies.models import PromptEvent
from tests.prompting.test_browser_decoder_api import sam_study
from tests.prompting.test_browser_prompting import Annotator, landmarks
from tests.static_server import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sam_page(chromium, init_script: str):
    """A 1280 x 720 page with `init_script`, not yet navigated (the caller closes its context)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.add_init_script(init_script)
    return context, page


def slow_server(monkeypatch, seconds: float) -> None:
    """Every prediction the server makes takes `seconds` longer (a slow server or network)."""
    from studies.prompting import events

    predict = events.request_prediction

    def slow_prediction(*args):
        time.sleep(seconds)
        return predict(*args)

    monkeypatch.setattr(events, "request_prediction", slow_prediction)


def join_and_annotate(page, live_server, study):
    """Join, consent and open the first image; return once the local preview is ready."""
    page.goto(f"{live_server.url}/s/{study.pk}/join")
    page.check("#agree")
    page.click("#consent-submit")
    page.click("#start")
    ui = Annotator(page)
    assignment = ui.open()
    page.wait_for_function("() => document.getElementById('app').dataset.preview === 'ready'")
    return ui, assignment


def test_click_draws_the_local_mask_then_the_servers_and_logs_what_was_shown(
    live_server, chromium, django_capture_on_commit_callbacks, monkeypatch
):
    if not (ROOT / "static" / "vendor" / "onnxruntime-web" / "ort.wasm.min.mjs").is_file():
        pytest.fail("static/vendor lacks onnxruntime-web: run `make setup`")
    study, _ = sam_study(django_capture_on_commit_callbacks)
    study.participants.all().delete()
    # a slow server (or network): the record must not wait for the local preview, nor the
    # preview for the record
    slow_server(monkeypatch, 1.0)
    context, page = sam_page(
        chromium,
        """
        window.__sources = [];
        window.__log = [];
        new MutationObserver(() => {
          const s = document.getElementById('app')?.dataset.maskSource;
          if (s && window.__sources[window.__sources.length - 1] !== s) {
            window.__sources.push(s);
            window.__log.push({ t: performance.now(), source: s });
          }
        }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-mask-source'] });
        const fetched = window.fetch;
        window.fetch = (url, init) => {
          const body = init && typeof init.body === 'string' ? init.body : '';
          window.__log.push({ t: performance.now(), url: String(url), shown: body.includes('"shown"') });
          return fetched(url, init);
        };
        """,
    )
    decoder_gets = []
    page.on("request", lambda r: decoder_gets.append(r.url) if "decoder.samdec" in r.url else None)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        ui, assignment = join_and_annotate(page, live_server, study)
        spots = landmarks(assignment)
        ui.click(spots["inside"])
        page.click("#btn-red")
        page.evaluate("() => { window.__sources = []; window.__log = []; }")
        ui.click(spots["outside"])
        page.wait_for_function(
            "() => document.getElementById('app').dataset.maskSource === 'server'"
        )
        sources = page.evaluate("() => window.__sources")
        page.wait_for_function("() => window.__log.some((e) => (e.url || '').endsWith('/shown'))")
        log = page.evaluate("() => window.__log")
        # the page is cross-origin isolated (COOP + COEP), so the decoder runs on threads
        isolated = page.evaluate("() => globalThis.crossOriginIsolated")
        threads = page.evaluate("() => document.getElementById('app').dataset.previewThreads")
        where = page.evaluate("() => document.getElementById('app').dataset.previewWhere")
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
    assert where == "worker"  # its script has the COEP that an isolated page's worker needs
    assert len(decoder_gets) == 1, decoder_gets  # one model load for the whole study
    assert PromptEvent.objects.get(assignment=second, timestep=0).shown_mask_sha256
    assert sources[:2] == ["local", "server"], sources  # the local mask first, then the record
    # the event left before the local mask was drawn, without `shown`; what was shown followed
    posts = [e for e in log if "url" in e and e["url"].endswith("/events")]
    local_at = next(e["t"] for e in log if e.get("source") == "local")
    server_at = next(e["t"] for e in log if e.get("source") == "server")
    shown_at = next(e["t"] for e in log if e.get("url", "").endswith("/shown"))
    assert len(posts) == 1 and not posts[0]["shown"], log
    assert posts[0]["t"] < local_at < server_at <= shown_at, log
    event = PromptEvent.objects.get(assignment=assignment, timestep=0)
    assert event.shown_mask_sha256 and len(event.shown_mask_sha256) == 64
    assert event.shown_iou_vs_server is not None and event.shown_iou_vs_server > 0.99
    assert event.client_latency_ms is not None and event.client_latency_ms > 0


def test_a_preview_slower_than_the_server_is_never_drawn_and_stops_after_five(
    live_server, chromium, django_capture_on_commit_callbacks
):
    """A weak device: the local decode (slowed here by 1.5 s) loses every race against the
    server's answer; nothing local is drawn or reported, and after five such clicks in a row
    the page stops decoding (#app data-preview="late"): the sixth click decodes nothing."""
    study, _ = sam_study(django_capture_on_commit_callbacks, min_green=1, min_red=0)
    study.participants.all().delete()
    context, page = sam_page(
        chromium,
        """
        window.__sources = [];
        new MutationObserver(() => {
          const s = document.getElementById('app')?.dataset.maskSource;
          if (s) window.__sources.push(s);
        }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-mask-source'] });
        """,
    )
    shown_posts = []
    page.on("request", lambda r: shown_posts.append(r.url) if r.url.endswith("/shown") else None)
    try:
        ui, assignment = join_and_annotate(page, live_server, study)
        page.evaluate(
            """() => {
            const preview = window.__workspace.preview();
            const decode = preview.decodeClick.bind(preview);
            window.__decodes = 0;
            preview.decodeClick = async (...args) => {
              window.__decodes++;
              const out = await decode(...args);
              await new Promise((resolve) => setTimeout(resolve, 1500));
              return out;
            };
        }"""
        )
        h, w = assignment.image.height, assignment.image.width
        for k in range(6):
            ui.click((w // 4 + 9 * k, h // 3))
            page.wait_for_function(
                "() => document.getElementById('app').dataset.maskSource === 'server'"
            )
            page.wait_for_timeout(1700)  # the slow decode comes back (and is dropped)
        decodes = page.evaluate("() => window.__decodes")
        state = page.evaluate("() => document.getElementById('app').dataset.preview")
        sources = page.evaluate("() => window.__sources")
    finally:
        context.close()
    assert "local" not in sources and sources.count("server") == 6, sources
    assert shown_posts == []
    assert decodes == 5 and state == "late", (decodes, state)
    events = PromptEvent.objects.filter(assignment=assignment, timestep__isnull=False)
    assert events.count() == 6 and not events.filter(shown_mask_sha256__isnull=False).exists()


def test_study_page_shows_the_decoder_export_at_three_viewports(
    live_server, new_page, django_capture_on_commit_callbacks
):
    from tests.browser_support import screenshot
    from tests.core.test_browser_trust import SIZES, login

    study, _ = sam_study(django_capture_on_commit_callbacks)
    for name, size in SIZES.items():
        page = new_page(viewport=size)
        login(page, live_server.url, study.owner)
        page.goto(f"{live_server.url}/studies/{study.pk}/")
        assert page.inner_text("#onnx_export-status") == "Done"
        assert "Browser decoder" in page.inner_text("#job-onnx_export")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (name, overflow)
        page.locator("#progress").scroll_into_view_if_needed()
        screenshot(page, f"researcher_sam_study_{name}")
        page.close()


def test_the_mask_is_decoded_while_the_pointer_rests_or_is_pressed(
    live_server, chromium, django_capture_on_commit_callbacks, monkeypatch
):
    """Decoding ahead on the page: where the pointer rests on the image, the prompt a click
    there would give is decoded before the click (nothing is shown), and the click draws it
    without decoding again; a click made without resting decodes once, from the pointerdown.
    The record is unchanged: the server's timestep, then what was shown."""
    study, _ = sam_study(django_capture_on_commit_callbacks, min_green=1, min_red=0)
    study.participants.all().delete()
    slow_server(monkeypatch, 0.6)  # the server's answer comes well after any local decode
    context, page = sam_page(
        chromium,
        """
        window.__log = [];
        new MutationObserver(() => {
          const s = document.getElementById('app')?.dataset.maskSource;
          if (s) window.__log.push({ t: performance.now(), source: s });
        }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-mask-source'] });
        window.addEventListener('pointerdown', () => window.__log.push({ t: performance.now(), down: true }), true);
        """,
    )
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        ui, assignment = join_and_annotate(page, live_server, study)
        page.evaluate(
            """() => {
            const decoder = window.__workspace.preview().decoder;
            const decode = decoder.decode.bind(decoder);
            decoder.decode = (...args) => {
              window.__log.push({ t: performance.now(), decode: JSON.stringify(args[0]) });
              return decode(...args);
            };
        }"""
        )
        box = page.locator("#canvas-image").bounding_box()
        scale = ui.scale()

        def at(xy):
            return box["x"] + (xy[0] + 0.5) * scale, box["y"] + (xy[1] + 0.5) * scale

        h, w = assignment.image.height, assignment.image.width
        rest, quick = (w // 3, h // 2), (2 * w // 3, h // 3)
        # rest on a spot: the decode runs before the click
        page.mouse.move(*at((rest[0] - 20, rest[1] - 10)))
        page.mouse.move(*at(rest), steps=4)
        page.wait_for_function("() => window.__log.some((e) => e.decode)")
        page.wait_for_function("() => !window.__workspace.preview().guessing")
        page.mouse.down()
        page.mouse.up()
        page.wait_for_function(
            "() => document.getElementById('app').dataset.maskSource === 'server'"
        )
        rested = page.evaluate("() => window.__log.splice(0)")
        ui.wait_idle(1)
        # a quick click elsewhere: no rest, one decode, started by the pointerdown
        page.mouse.move(*at(quick))
        page.mouse.down()
        page.mouse.up()
        page.wait_for_function(
            "() => document.getElementById('app').dataset.maskSource === 'server'"
        )
        ui.wait_idle(2)
        quick_log = page.evaluate("() => window.__log.splice(0)")
    finally:
        context.close()
    assert errors == []

    def split(log):
        down = next(i for i, e in enumerate(log) if e.get("down"))
        decodes = [json.loads(e["decode"]) for e in log if "decode" in e]
        after = [json.loads(e["decode"]) for e in log[down:] if "decode" in e]
        sources = [e["source"] for e in log[down:] if "source" in e]
        return decodes, after, sources

    decodes, after, sources = split(rested)
    assert decodes == [[list(rest)]] and after == [], rested  # decoded once, before the click
    down = next(i for i, e in enumerate(rested) if e.get("down"))
    assert not any("source" in e for e in rested[:down]), rested  # nothing shown before it
    assert sources[:2] == ["local", "server"], rested
    decodes, after, sources = split(quick_log)
    assert after == [[list(rest), list(quick)]] and decodes == after, quick_log
    assert sources[:2] == ["local", "server"], quick_log
    first, second = PromptEvent.objects.filter(assignment=assignment).order_by("seq")
    for event in (first, second):
        assert event.shown_iou_vs_server is not None and event.shown_iou_vs_server > 0.99
    # the rested click's mask was ready at the pointerdown: drawn within frames, not a decode
    assert first.client_latency_ms < 200, first.client_latency_ms
