"""Click -> mask drawn with SAM's decoder in the browser (static/prompting/sam_decoder.js on
onnxruntime-web, single-threaded wasm, headless Chromium), beside today's server path, and how
well the two agree.

A randomly initialised, seeded vit_b SAM (the released vit_b's architecture, the checkpoint
bench/click_latency.py uses) is loaded; its prompt encoder + mask decoder are exported to ONNX
(cached by weights sha256); one 480 x 640 generated image is embedded once on the CPU and served
as float16 (interventions/segmentation/browser.py). A bounded static server on 127.0.0.1 serves
a bench page that imports sam_decoder.js. Each timed click decodes the current points (random
positions; 1-11 points, a new sequence every 11 clicks) and draws the mask on a canvas over the
image; the time runs from the click's points being handed to the decoder to the first
requestAnimationFrame after the draw (performance.now() in the page; no input event dispatch).
The page upscales only the image's part of SAM's padded 1024 frame (decoder v3); each click is
also decoded upscaling the whole frame (`fullLowRes`, what v2 did and chained studies still do),
in alternating order, and both decode times are reported with their ratio.
The server path is measured in process: `SamBackend.predict` on the cached float32 embedding,
same prompts, no HTTP and no queue (bench/click_latency.py measures those). Agreement: IoU of
the browser's mask vs the server's mask for every timed click (same mask_choice: half of the
click sequences "first", half "best_predicted").

Prints ONE JSON line.

    .venv/bin/python bench/browser_click.py [--clicks 200] [--quick] [--wasm-threads 1]

Needs `make setup` (onnxruntime-web in static/vendor/) and Chromium; downloads nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.click_latency import CHECKPOINT  # noqa: E402
from tests.live_stack import random_sam_vit_b_checkpoint  # noqa: E402
from tests.static_server import StaticServer  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ONNX_CACHE = Path(tempfile.gettempdir()) / "intervene-bench" / "onnx"
VENDOR = ROOT / "static" / "vendor" / "onnxruntime-web"
GOAL_P95_MS = 50.0
BATCH = 50  # clicks per page.evaluate (keeps each message a few MB)

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>browser click bench</title>
<div style="position: relative">
  <canvas id="image" style="position: absolute"></canvas>
  <canvas id="mask" style="position: absolute"></canvas>
</div>
<script type="module">
import { loadSamDecoder } from "/static/prompting/sam_decoder.js";

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

function packBits(mask) {
  const bytes = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) bytes[i >> 3] |= 128 >> (i & 7);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

window.benchReady = (async () => {
  const t0 = performance.now();
  const decoder = await loadSamDecoder({ modelUrl: "/files/decoder.samdec", numThreads: NUM_THREADS });
  const t1 = performance.now();
  const buffer = await (await fetch("/files/embedding.f16")).arrayBuffer();
  const info = decoder.setEmbedding(buffer);
  const t2 = performance.now();
  await decoder.embedding.prepared;  // the per-image graph, run once when the embedding arrives
  const prepareMs = performance.now() - t2;
  const [h, w] = info.originalSize;
  for (const id of ["image", "mask"]) {
    const c = document.getElementById(id);
    c.width = w;
    c.height = h;
  }
  const pixels = new Uint8ClampedArray(await (await fetch("/files/image.rgba")).arrayBuffer());
  document.getElementById("image").getContext("2d").putImageData(new ImageData(pixels, w, h), 0, 0);
  window.decoder = decoder;
  window.overlay = new ImageData(w, h);
  return {
    loadMs: t1 - t0, convertMs: info.convertMs, prepareMs, embeddingBytes: buffer.byteLength,
    numThreads: decoder.numThreads, isolated: globalThis.crossOriginIsolated,
  };
})();

window.runClicks = async (prompts, keepMasks) => {
  const ctx = document.getElementById("mask").getContext("2d");
  const rgba = window.overlay.data;
  const out = [];
  for (const [k, p] of prompts.entries()) {
    // the baseline in the same run: the same click upscaling SAM's whole padded frame (as
    // decoder v2 did, and as a study that chains the low-res mask still does); order alternates
    const full = async () => (await window.decoder.decode(p.points, p.labels,
        { maskChoice: p.maskChoice, fullLowRes: true })).decodeMs;
    const fullFirst = k % 2 === 0;
    const fullMs = fullFirst ? await full() : null;
    const started = performance.now();
    const r = await window.decoder.decode(p.points, p.labels, { maskChoice: p.maskChoice });
    for (let i = 0, j = 3; i < r.mask.length; i++, j += 4) {
      rgba[j - 3] = 30; rgba[j - 2] = 144; rgba[j - 1] = 255; rgba[j] = r.mask[i] ? 110 : 0;
    }
    ctx.putImageData(window.overlay, 0, 0);
    await nextFrame();
    const drawnMs = performance.now() - started;
    out.push({
      drawnMs, decodeMs: r.decodeMs, fullMs: fullFirst ? fullMs : await full(),
      maskIndex: r.maskIndex, predictedIou: r.predictedIou,
      bits: keepMasks ? packBits(r.mask) : null,
    });
  }
  return out;
};
</script>
"""


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2) if values else float("nan")


def click_prompts(n: int, height: int, width: int, seed: int) -> list[dict]:
    """``n`` prompts as an annotator builds them: one point added per click, a new sequence
    every 11 clicks (so 1-11 points); green on clicks 0, 1, 4, 7, 10 of a sequence, else red
    (as bench/click_latency.py); mask_choice alternating per sequence."""
    rng = np.random.default_rng(seed)
    prompts, points, labels = [], [], []
    for i in range(n):
        k = i % 11
        if k == 0:
            points, labels = [], []
        points.append([float(rng.uniform(0, width)), float(rng.uniform(0, height))])
        points[-1] = [min(points[-1][0], width - 0.01), min(points[-1][1], height - 0.01)]
        labels.append(1 if k in (0, 1, 4, 7, 10) else 0)
        choice = "first" if (i // 11) % 2 == 0 else "best_predicted"
        prompts.append({"points": [*points], "labels": [*labels], "maskChoice": choice})
    return prompts


def browser_clicks(url: str, prompts: list[dict], warmup: int, timeout_s: float) -> dict:
    from playwright.sync_api import sync_playwright

    results: list[dict] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(timeout_s * 1000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            setup = page.evaluate("window.benchReady")
            page.evaluate("(p) => window.runClicks(p, false)", prompts[:warmup])
            timed = prompts[warmup:]
            for start in range(0, len(timed), BATCH):
                batch = timed[start : start + BATCH]
                results += page.evaluate("(p) => window.runClicks(p, true)", batch)
            if errors:
                raise RuntimeError(f"bench page errors: {errors}")
            user_agent = page.evaluate("navigator.userAgent")
        finally:
            browser.close()
    return {"setup": setup, "clicks": results, "user_agent": user_agent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=200, help="timed clicks (default 200)")
    parser.add_argument("--quick", action="store_true", help="30 clicks, to check it runs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed clicks first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--wasm-threads",
        type=int,
        default=1,
        help="onnxruntime-web threads; > 1 serves the page cross-origin isolated (COOP/COEP)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the browser")
    args = parser.parse_args()
    clicks = 30 if args.quick else args.clicks
    if not (VENDOR / "ort.wasm.min.mjs").is_file():
        raise SystemExit(f"{VENDOR} lacks onnxruntime-web: run `make setup` first")

    import torch

    from interventions.demo_data import generate_scene
    from interventions.segmentation.browser import embedding_to_f16_bytes
    from interventions.segmentation.onnx_export import cached_decoder_onnx
    from interventions.segmentation.sam import SamBackend

    torch.set_num_threads(args.torch_threads)
    checkpoint = random_sam_vit_b_checkpoint(CHECKPOINT, seed=0)
    backend = SamBackend.from_checkpoint("vit_b", checkpoint, device="cpu")
    sam = backend.predictor.model
    started = time.perf_counter()
    onnx_path = cached_decoder_onnx(sam, ONNX_CACHE, "vit_b", backend.weights_sha256)
    export_s = time.perf_counter() - started
    image = np.ascontiguousarray(generate_scene("Cluttered scenes", 0, size=640).image[:480])
    started = time.perf_counter()
    embedding = backend.embed(image)
    embed_s = time.perf_counter() - started
    height, width = embedding.original_size
    prompts = click_prompts(args.warmup + clicks, height, width, args.seed)
    timed = prompts[args.warmup :]

    # cross-origin isolation (COOP + COEP) only when more than one wasm thread is asked for
    isolation = (
        {
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Embedder-Policy": "require-corp",
        }
        if args.wasm_threads > 1
        else {}
    )
    with tempfile.TemporaryDirectory(prefix="intervene-bench-browser-") as folder:
        files = Path(folder)
        (files / "index.html").write_text(PAGE.replace("NUM_THREADS", str(args.wasm_threads)))
        shutil.copyfile(onnx_path, files / "decoder.samdec")
        (files / "embedding.f16").write_bytes(embedding_to_f16_bytes(embedding))
        rgba = np.concatenate([image, np.full((height, width, 1), 255, np.uint8)], axis=2)
        (files / "image.rgba").write_bytes(rgba.tobytes())
        load_before = os.getloadavg()[0]
        with StaticServer(files, headers=isolation) as server:
            page = browser_clicks(server.url, prompts, args.warmup, args.timeout)

    # today's server path on the same prompts, and the agreement
    server_ms, ious, same_index, identical = [], [], 0, 0
    for prompt, got in zip(timed, page["clicks"], strict=True):
        pts = np.asarray(prompt["points"], dtype=np.float64)
        labs = np.asarray(prompt["labels"], dtype=np.int64)
        t0 = time.perf_counter()
        pred = backend.predict(embedding, pts, labs, multimask=True)
        index = (
            int(np.argmax(pred.predicted_iou)) if prompt["maskChoice"] == "best_predicted" else 0
        )
        server_ms.append((time.perf_counter() - t0) * 1000.0)
        ref = pred.masks[index]
        bits = np.frombuffer(base64.b64decode(got["bits"]), np.uint8)
        shown = np.unpackbits(bits)[: height * width].reshape(height, width).astype(bool)
        union = np.logical_or(ref, shown).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(ref, shown).sum() / union))
        same_index += got["maskIndex"] == index
        identical += bool(np.array_equal(ref, shown))

    drawn = [c["drawnMs"] for c in page["clicks"]]
    decode = [c["decodeMs"] for c in page["clicks"]]
    decode_full = [c["fullMs"] for c in page["clicks"]]
    result = {
        "bench": "browser_click",
        "model": "vit_b, random weights (seed 0), decoder exported to ONNX opset 17",
        "image": [height, width],
        "clicks": len(drawn),
        "browser": {
            "runtime": "onnxruntime-web 1.30.0, wasm SIMD, headless Chromium",
            "wasm_threads": page["setup"]["numThreads"],
            "cross_origin_isolated": page["setup"]["isolated"],
            "click_to_drawn_p50_ms": percentile(drawn, 50),
            "click_to_drawn_p95_ms": percentile(drawn, 95),
            "decode_p50_ms": percentile(decode, 50),
            "decode_p95_ms": percentile(decode, 95),
            "decode_min_ms": round(min(decode), 2),
            "decode_full_frame_p50_ms": percentile(decode_full, 50),
            "decode_full_frame_p95_ms": percentile(decode_full, 95),
            "full_frame_over_image_only_p50": round(
                float(np.median(decode_full)) / float(np.median(decode)), 3
            ),
            "model_load_ms": round(page["setup"]["loadMs"], 1),
            "embedding_f16_bytes": page["setup"]["embeddingBytes"],
            "embedding_convert_ms": round(page["setup"]["convertMs"], 1),
            "image_prepare_ms": round(page["setup"]["prepareMs"], 1),
        },
        "server_in_process": {
            "path": "SamBackend.predict on the float32 embedding, in process (no HTTP, no queue)",
            "torch_threads": args.torch_threads,
            "p50_ms": percentile(server_ms, 50),
            "p95_ms": percentile(server_ms, 95),
        },
        "agreement": {
            "mean_iou": round(float(np.mean(ious)), 6),
            "min_iou": round(float(np.min(ious)), 6),
            "identical_fraction": round(identical / len(ious), 4),
            "same_mask_index_fraction": round(same_index / len(ious), 4),
            "goal_mean_iou": 0.999,
        },
        "onnx_export_s": round(export_s, 2),
        "embed_s": round(embed_s, 2),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "goal_p95_ms": GOAL_P95_MS,
        "goal_met": percentile(drawn, 95) <= GOAL_P95_MS and float(np.mean(ious)) >= 0.999,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
