"""static/prompting/local_preview.js in headless Chromium against a live server (eager Celery,
SQLite, a tiny seeded random SAM in the worker cache): the preview fetches the exported decoder
and the float16 embedding through the participant API, decodes a click like the server, and
its `shown` payload is accepted and scored by the server."""

import base64
import json

import numpy as np
import pytest

from interventions.metrics import iou, rle_decode, rle_encode
from interventions.segmentation.browser import mask_sha256
from studies.models import PromptEvent
from tests.factories import prompting_study
from tests.prompting.test_browser_decoder_api import sam_study
from tests.static_server import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VENDOR = ROOT / "static" / "vendor" / "onnxruntime-web"

HELPERS = """
window.bits = (mask) => {
  let s = "";
  for (let i = 0; i < mask.length; i++) s += String.fromCharCode(mask[i]);
  return btoa(s);
};
window.api = async (path, body) => {
  const init = { headers: { Authorization: "Bearer " + window.token } };
  if (body) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api/v1/" + path, init);
  return { status: response.status, body: await response.json() };
};
"""


def open_page(new_page, live_server, token, init_script=None):
    page = new_page()
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"{live_server.url}/static/prompting/local_preview.js")  # any same-origin page
    page.evaluate(f"() => {{ window.token = {json.dumps(token)}; {HELPERS} }}")
    page.evaluate(
        """async () => {
        window.lp = await import("/static/prompting/local_preview.js");
    }"""
    )
    return page


def consented(participant):
    from django.utils import timezone

    participant.consent_version = participant.study.consent_version
    participant.consented_at = timezone.now()
    participant.save()
    return participant


def test_preview_decodes_like_the_server_and_its_shown_payload_is_logged(
    live_server, new_page, django_capture_on_commit_callbacks
):
    if not (VENDOR / "ort.wasm.min.mjs").is_file():
        pytest.fail(f"{VENDOR} lacks onnxruntime-web: run `make setup` (npm ci + copy)")
    study, _ = sam_study(django_capture_on_commit_callbacks)
    participant = consented(study.participants.get(number=1))
    first, second = participant.assignments.order_by("order")[:2]
    page = open_page(new_page, live_server, participant.token)
    h, w = first.image.height, first.image.width
    green, red = [w * 0.5, h * 0.4], [3.0, 4.0]
    out = page.evaluate(
        """async ([aid, second, green, red]) => {
        const state = await api(`assignments/${aid}`);
        const preview = lp.createLocalPreview(aid, state.body.decoder,
            { fetchInit: { headers: { Authorization: "Bearer " + token } } });
        const ready = await preview.ready;
        const clickedAt = performance.now();
        const local = await preview.decodeClick([green, red], [1, 0], { clickedAt });
        const shown = await preview.shownPayload(local, performance.now());
        await api(`assignments/${aid}/events`,
            { client_event_id: "g", seq: 0, action: "add", mode: "green", x: green[0], y: green[1] });
        const answer = await api(`assignments/${aid}/events`,
            { client_event_id: "r", seq: 1, action: "add", mode: "red", x: red[0], y: red[1] });
        const recorded = await api(`assignments/${aid}/events/r/shown`, shown);
        const prefetched = await preview.prefetch(second);
        const moved = await preview.setAssignment(second);
        const other = await preview.decodeClick([green], [1]);
        const hoverOff = await preview.hover([green], [1], red);
        const hovering = lp.createLocalPreview(second, { ...state.body.decoder, hover_preview: true },
            { fetchInit: { headers: { Authorization: "Bearer " + token } } });
        const hovers = await Promise.all([[9, 9], [19, 9], red].map(
            (at) => hovering.hover([green], [1], at)));
        const direct = await hovering.decodeClick([green, red], [1, 1]);
        window.preview = preview;
        return { ready, reason: preview.reason, bits: bits(local.mask), width: local.width,
                 height: local.height, rle: shown.mask_rle, sha256: shown.sha256,
                 latencyMs: local.latencyMs, shown, answer, recorded, prefetched, moved,
                 otherBits: other && bits(other.mask), hoverOff,
                 hoverBits: hovers.map((h) => h && bits(h.mask)), directBits: bits(direct.mask),
                 directAhead: direct.ahead };
    }""",
        [first.pk, second.pk, green, red],
    )
    assert out["ready"] is True and out["reason"] is None
    mask = np.frombuffer(base64.b64decode(out["bits"]), np.uint8).reshape(h, w).astype(bool)
    assert (out["width"], out["height"]) == (w, h)
    assert out["rle"] == rle_encode(mask)  # the JS encoder writes pycocotools' string
    assert out["sha256"] == mask_sha256(mask)
    assert (
        out["shown"]["source"] == "local" and out["shown"]["latency_ms"] >= out["latencyMs"] - 1e-3
    )
    assert out["answer"]["status"] == 200, out["answer"]
    assert out["recorded"]["status"] == 200, out["recorded"]
    server = rle_decode(out["answer"]["body"]["mask_rle"])
    assert iou(mask, server) > 0.99  # float16 embedding vs the server's float32
    row = PromptEvent.objects.get(assignment=first, seq=1)
    assert row.shown_mask_sha256 == out["sha256"]
    assert row.shown_iou_vs_server == pytest.approx(iou(mask, server))
    assert row.client_latency_ms == pytest.approx(out["shown"]["latency_ms"])
    assert out["prefetched"] is True and out["moved"] is True and out["otherBits"]
    # hover: off by default; on, the latest of three quick hovers is the one decoded
    assert out["hoverOff"] is None
    assert out["hoverBits"][:2] == [None, None] and out["hoverBits"][2] == out["directBits"]
    assert out["directAhead"] is True  # a green click at the hovered point takes its decode


def test_no_preview_for_a_classical_study_or_without_webassembly(
    live_server, new_page, django_capture_on_commit_callbacks
):
    classical = prompting_study(n_images=1, participants=1)
    participant = consented(classical.participants.get())
    aid = participant.assignments.get().pk
    page = open_page(new_page, live_server, participant.token)
    out = page.evaluate(
        """async (aid) => {
        const state = await api(`assignments/${aid}`);
        const preview = lp.createLocalPreview(aid, state.body.decoder);
        return { ready: await preview.ready, reason: preview.reason,
                 local: await preview.decodeClick([[5, 5]], [1]),
                 shown: await preview.shownPayload(null) };
    }""",
        aid,
    )
    assert (
        out
        == {
            "ready": False,
            "reason": out["reason"],
            "local": None,
            "shown": None,
        }
        and "classical" in out["reason"]
    )

    study, _ = sam_study(django_capture_on_commit_callbacks)
    participant = consented(study.participants.get(number=1))
    aid = participant.assignments.order_by("order").first().pk
    page = open_page(new_page, live_server, participant.token, "delete window.WebAssembly;")
    out = page.evaluate(
        """async (aid) => {
        const state = await api(`assignments/${aid}`);
        const preview = lp.createLocalPreview(aid, state.body.decoder);
        return { ready: await preview.ready, reason: preview.reason, available: preview.available,
                 local: await preview.decodeClick([[5, 5]], [1]) };
    }""",
        aid,
    )
    assert out["ready"] is False and out["local"] is None and not out["available"]
    assert "WebAssembly" in out["reason"]


def test_decoding_ahead_of_a_click_is_taken_by_that_click_only(
    live_server, new_page, django_capture_on_commit_callbacks
):
    """LocalPreview.decodeAhead: the prompt a click would give is decoded before the click; the click
    with that prompt takes the result without decoding again, any other prompt decodes anew.
    Only the latest of several quick requests waits behind the running one; a chained study
    never takes a decode made before the chained mask changed."""
    study, _ = sam_study(django_capture_on_commit_callbacks)
    participant = consented(study.participants.get(number=1))
    first, second = participant.assignments.order_by("order")[:2]
    page = open_page(new_page, live_server, participant.token)
    h, w = first.image.height, first.image.width
    spots = [[w * 0.5, h * 0.4], [w * 0.2, h * 0.3], [w * 0.7, h * 0.6]]
    out = page.evaluate(
        """async ([aid, second, spots]) => {
        const state = await api(`assignments/${aid}`);
        const make = (id, block) => lp.createLocalPreview(id, block,
            { fetchInit: { headers: { Authorization: "Bearer " + token } } });
        const counted = (preview) => {
          const decode = preview.decoder.decode.bind(preview.decoder);
          preview.decoded = [];
          preview.decoder.decode = (points, ...rest) => {
            preview.decoded.push(JSON.stringify(points));
            return decode(points, ...rest);
          };
        };
        const preview = make(aid, state.body.decoder);
        await preview.ready;
        counted(preview);
        const [a, b, c] = spots;
        const queued = [preview.decodeAhead([a], [1]), preview.decodeAhead([b], [1]), preview.decodeAhead([c], [1])];
        await preview.guess.run;  // a's decode; b's request was replaced by c's
        while (preview.guessing) await preview.guess.run;
        const ahead = await preview.decodeClick([c], [1]);
        const fresh = await preview.decodeClick([c], [1]);  // taken once: this one decodes
        const notTaken = await preview.decodeClick([a], [1]);
        const decoded = [...preview.decoded];

        const chained = make(aid, { ...state.body.decoder, chain_low_res_mask: true });
        await chained.ready;
        counted(chained);
        chained.decodeAhead([a], [1]);
        await chained.guess.run;
        const other = await chained.decodeClick([b], [1]);  // chains b's low-res mask
        const stale = await chained.decodeClick([a], [1]);
        chained.decodeAhead([b, c], [1, 0]);
        const chainedAhead = await chained.decodeClick([b, c], [1, 0]);
        const afterAhead = chained.lastLowRes !== null;

        // the same decode on the page's main thread (where workers cannot run the decoder)
        const main = lp.createLocalPreview(aid, state.body.decoder,
            { fetchInit: { headers: { Authorization: "Bearer " + token } }, inWorker: false });
        await main.ready;
        const onMain = await main.decodeClick([c], [1]);
        const where = [preview.where, main.where];
        const sameOnMain = bits(onMain.mask) === bits(fresh.mask);

        const moved = await preview.setAssignment(second);
        const otherImage = preview.decodeAhead([a], [1]);
        await preview.guess.run;
        const onSecond = await preview.decodeClick([a], [1]);
        return { queued, ahead: ahead.ahead, fresh: fresh.ahead, notTaken: notTaken.ahead,
                 same: bits(ahead.mask) === bits(fresh.mask), decoded,
                 other: other.ahead, stale: stale.ahead, chainedAhead: chainedAhead.ahead,
                 afterAhead, chainedDecoded: chained.decoded, moved, otherImage,
                 onSecond: onSecond.ahead, where, sameOnMain };
    }""",
        [first.pk, second.pk, spots],
    )
    assert out["queued"] == [True, True, True]
    # a ran, b was replaced while a ran, c ran; the click on c took c's; then c again, then a
    assert [json.loads(x) for x in out["decoded"]] == [
        [spots[0]],
        [spots[2]],
        [spots[2]],
        [spots[0]],
    ]
    assert out["ahead"] is True and out["fresh"] is False and out["notTaken"] is False
    assert out["same"] is True
    assert out["where"] == ["worker", "main thread"] and out["sameOnMain"] is True
    assert out["other"] is False and out["stale"] is False and out["chainedAhead"] is True
    assert out["afterAhead"] is True  # a click that took a decode ahead chains its logits
    assert len(out["chainedDecoded"]) == 4  # a ahead, b, a again (stale), b+c ahead
    assert out["moved"] is True and out["otherImage"] is True and out["onSecond"] is True
