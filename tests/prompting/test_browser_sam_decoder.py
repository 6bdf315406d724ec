"""static/prompting/sam_decoder.js in headless Chromium (onnxruntime-web from static/vendor/, put there
by `make setup`) against the server's SamBackend.predict on a tiny seeded random SAM."""

import base64

import numpy as np
import pytest
import torch

from interventions.segmentation.browser import (
    embedding_from_f16_bytes,
    embedding_to_f16_bytes,
    mask_sha256,
    onnx_decoder_feeds,
)
from interventions.segmentation.onnx_export import DecoderSessions, export_decoder_onnx
from interventions.segmentation.sam import SamBackend
from tests.science.test_segmentation_sam import tiny_sam
from tests.static_server import ROOT, StaticServer

pytestmark = pytest.mark.browser

VENDOR = ROOT / "static" / "vendor" / "onnxruntime-web"

PAGE = """<!doctype html><meta charset="utf-8"><title>sam decoder</title>
<script type="module">
import * as sd from "/static/prompting/sam_decoder.js";
window.sd = sd;
window.bits = (mask) => {
  let s = "";
  for (let i = 0; i < mask.length; i++) s += String.fromCharCode(mask[i]);
  return btoa(s);
};
window.ready = true;
</script>"""

PROMPTS = [
    ([[100.0, 20.0], [10.0, 80.0]], [1, 0], "first"),
    ([[64.5, 47.25]], [1], "best_predicted"),
    # 12 points: past the few-token graph (10 at most), so the page runs the usual one too
    ([[8.0 + 9.5 * i, 5.0 + 7.25 * i] for i in range(12)], [1, 0] * 6, "first"),
    ([[3.0, 90.5], [120.25, 5.0], [60.0, 60.0], [30.0, 30.0]], [1, 0, 1, 0], "best_predicted"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not (VENDOR / "ort.wasm.min.mjs").is_file():
        pytest.fail(f"{VENDOR} lacks onnxruntime-web: run `make setup` (npm ci + copy)")
    torch.set_num_threads(2)
    sam = tiny_sam()
    backend = SamBackend.from_model(sam, model_id="sam-tiny-test", device="cpu")
    rng = np.random.default_rng(2)
    embedding = backend.embed(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    files = tmp_path_factory.mktemp("served")
    export_decoder_onnx(sam, files / "decoder.samdec")
    (files / "embedding.f16").write_bytes(embedding_to_f16_bytes(embedding))
    (files / "index.html").write_text(PAGE)
    session = DecoderSessions(files / "decoder.samdec")
    with StaticServer(files) as server:
        yield server, backend, embedding, session


def open_page(new_page, server, init_script=None):
    page = new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    if init_script:
        page.add_init_script(init_script)
    page.goto(server.url)
    page.wait_for_function("window.ready === true")
    return page


def unpack(b64, h, w):
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w)


def test_decode_gives_the_server_mask(new_page, served):
    server, backend, embedding, session = served
    page = open_page(new_page, server)
    got = page.evaluate(
        """async (prompts) => {
        const decoder = await sd.loadSamDecoder({ modelUrl: "/files/decoder.samdec" });
        const buffer = await (await fetch("/files/embedding.f16")).arrayBuffer();
        const info = decoder.setEmbedding(buffer);
        // three clicks at once: the decoder queues them (one session.run at a time)
        const results = await Promise.all(prompts.map(([p, l, c]) =>
            decoder.decode(p, l, { maskChoice: c, fullLowRes: true })));
        // by default only the image's part of SAM's padded frame is upscaled: same mask
        const cropped = await decoder.decode(prompts[0][0], prompts[0][1], { maskChoice: prompts[0][2] });
        const out = [];
        for (const r of results) {
          out.push({
            bits: bits(r.mask), width: r.width, height: r.height, maskIndex: r.maskIndex,
            predictedIou: r.predictedIou, iouPredictions: Array.from(r.iouPredictions),
            lowRes: r.lowResLogits.length, decodeMs: r.decodeMs, sha: await sd.maskSha256(r.mask),
          });
        }
        // chaining: the first answer's low-res logits as the next mask input
        const first = results[0];
        const chained = await decoder.decode(prompts[0][0], prompts[0][1],
            { maskInput: first.lowResLogits });
        return { info, out, chained: bits(chained.mask), numThreads: decoder.numThreads,
                 croppedBits: bits(cropped.mask), croppedLow: cropped.lowResLogits,
                 lowRes0: Array.from(first.lowResLogits.subarray(0, 4096)) };
    }""",
        PROMPTS,
    )
    assert got["info"]["originalSize"] == [96, 128] and got["info"]["shape"] == [1, 256, 64, 64]
    assert got["info"]["inputSize"] == list(embedding.input_size)
    assert got["numThreads"] == 1
    assert got["croppedBits"] == got["out"][0]["bits"] and got["croppedLow"] is None
    half = embedding_from_f16_bytes(embedding_to_f16_bytes(embedding), embedding.model_id)
    for (points, labels, choice), r in zip(PROMPTS, got["out"], strict=True):
        assert (r["height"], r["width"]) == (96, 128) and r["lowRes"] == 256 * 256
        assert r["decodeMs"] > 0
        pts, labs = np.asarray(points), np.asarray(labels)
        server_pred = backend.predict(embedding, pts, labs)
        index = int(np.argmax(server_pred.predicted_iou)) if choice == "best_predicted" else 0
        assert r["maskIndex"] == index
        np.testing.assert_allclose(r["iouPredictions"], server_pred.predicted_iou, atol=1e-3)
        shown = unpack(r["bits"], 96, 128).astype(bool)
        server_mask = server_pred.masks[index]
        iou = np.logical_and(shown, server_mask).sum() / np.logical_or(shown, server_mask).sum()
        assert iou >= 0.999, f"IoU vs server {iou:.5f}"
        # the same graph on the same float16 embedding in Python: the same inputs were built
        native = session.run(onnx_decoder_feeds(half, pts, labs, mask_choice=choice))
        assert (shown != (native[0][0, 0] > 0)).sum() <= 2
        assert r["sha"] == mask_sha256(shown)
    # chained prompt equals the Python feeds with the same prior
    prior_pred = backend.predict(half, *map(np.asarray, PROMPTS[0][:2]))
    np.testing.assert_allclose(
        got["lowRes0"], prior_pred.low_res_logits[0].ravel()[:4096], atol=1e-3
    )
    feeds = onnx_decoder_feeds(
        half, *map(np.asarray, PROMPTS[0][:2]), mask_input=prior_pred.low_res_logits[0][None]
    )
    chained = unpack(got["chained"], 96, 128).astype(bool)
    assert (chained != (session.run(feeds)[0][0, 0] > 0)).sum() <= 2
    assert not page.errors, page.errors
    # everything came from the page's own server: onnxruntime-web from static/vendor, no CDN
    assert all(url.startswith(server.url) for url in page.requested), page.requested
    assert any(
        url.endswith("/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
        for url in page.requested
    )


def test_bad_input_is_refused(new_page, served):
    server, *_ = served
    page = open_page(new_page, server)
    messages = page.evaluate(
        """async () => {
        const decoder = await sd.loadSamDecoder({ modelUrl: "/files/decoder.samdec" });
        const out = [];
        try { await decoder.decode([[1, 1]], [1]); } catch (e) { out.push(e.message); }
        decoder.setEmbedding(await (await fetch("/files/embedding.f16")).arrayBuffer());
        for (const [p, l] of [[[[128, 5]], [1]], [[[1, 1]], [2]], [[[1, 1]], []]]) {
          try { await decoder.decode(p, l); } catch (e) { out.push(e.message); }
        }
        const ok = await decoder.decode([[1, 1]], [1]);  // the queue survived the refusals
        out.push(ok.mask.length);
        try { decoder.setEmbedding(new ArrayBuffer(64)); } catch (e) { out.push(e.message); }
        return out;
    }"""
    )
    assert "setEmbedding() first" in messages[0]
    assert "outside the image" in messages[1]
    assert "label 0 must be 0 or 1" in messages[2]
    assert "one label per point" in messages[3]
    assert messages[4] == 96 * 128
    assert "not a float16 SAM embedding" in messages[5]


@pytest.mark.parametrize(
    "init_script, options, reason",
    [
        ("delete window.WebAssembly;", {}, "WebAssembly is not available"),
        (None, {"ortUrl": "/static/vendor/none.mjs"}, "onnxruntime-web did not load"),
        (None, {"modelUrl": "/files/missing.onnx"}, "the decoder model did not load"),
    ],
)
def test_unavailability_is_reported(new_page, served, init_script, options, reason):
    server, *_ = served
    page = open_page(new_page, server, init_script)
    got = page.evaluate(
        """async (options) => {
        try {
          await sd.loadSamDecoder({ modelUrl: "/files/decoder.samdec", ...options });
          return null;
        } catch (e) {
          return { name: e.name, isUnavailable: e instanceof sd.DecoderUnavailable,
                   reason: e.reason, message: e.message };
        }
    }""",
        options,
    )
    assert got is not None, "loadSamDecoder resolved where it cannot run"
    assert got["isUnavailable"] and got["name"] == "DecoderUnavailable"
    assert reason in got["reason"]


def test_float16_widening_is_exact(new_page, served):
    """Every float16 bit pattern widens in the page as numpy widens it (the server's view)."""
    server, *_ = served
    page = open_page(new_page, server)
    b64 = page.evaluate(
        """() => {
        const all = new Uint16Array(65536);
        for (let i = 0; i < all.length; i++) all[i] = i;
        const bytes = new Uint8Array(sd.halfToFloat32(all).buffer);
        let s = "";
        for (let i = 0; i < bytes.length; i += 0x8000) {
          s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
        }
        return btoa(s);
    }"""
    )
    got = np.frombuffer(base64.b64decode(b64), "<f4")
    expected = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    assert np.array_equal(got, expected, equal_nan=True)
    finite = np.isfinite(expected)
    assert np.array_equal(got[finite].view(np.uint32), expected[finite].view(np.uint32))  # -0.0


@pytest.mark.parametrize("native", [True, False], ids=["Math.f16round", "bit-twiddling"])
def test_round_to_float16_is_numpy_rounding(new_page, served, native):
    """The chained mask input goes through float16 on the server; the page rounds the same."""
    server, *_ = served
    page = open_page(new_page, server, None if native else "delete Math.f16round;")
    rng = np.random.default_rng(4)
    values = np.concatenate(
        [
            rng.normal(0, 20, 2000),
            rng.normal(0, 1e-5, 500),  # float16 subnormals
            [65504, 65519.99, 65520, 1e6, -1e6, 2.0**-25, 2.0**-24, 3 * 2.0**-26, 0.0, -0.0],
            1 + np.arange(1, 9) * 2.0**-11,  # ties at 1: round to even
        ]
    ).astype(np.float32)
    raw = base64.b64encode(values.astype("<f4").tobytes()).decode()
    b64 = page.evaluate(
        """(raw) => {
        const bytes = Uint8Array.from(atob(raw), (c) => c.charCodeAt(0));
        const out = new Uint8Array(sd.roundToFloat16(new Float32Array(bytes.buffer)).buffer);
        let s = "";
        for (let i = 0; i < out.length; i += 0x8000) {
          s += String.fromCharCode.apply(null, out.subarray(i, i + 0x8000));
        }
        return btoa(s);
    }""",
        raw,
    )
    got = np.frombuffer(base64.b64decode(b64), "<f4")
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
