"""Click -> mask drawn on the prompting workspace, measured in the page (headless Chromium).

A throw-away SQLite database and media folder, one prompting study on the classical backend
(eager Celery, as the demo and tests run), a live Django server on 127.0.0.1. The participant
joins, consents and clicks on the image; each timed click waits for the answer before the next
one. `window.__timings` (static/prompting/annotate.js) holds, per click that produced a mask,
performance.now() from the pointerdown to the first animation frame after the mask was drawn.
Baseline in the same run: the POST /events round trip of the same clicks (the browser's
Resource Timing `duration`), so `ratio` = click-to-drawn / round trip shows what the page adds
on top of the server.

Prints ONE JSON line.

    .venv/bin/python bench/workspace_click.py [--clicks 60] [--viewport 1280x720]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local_site import live_server, throwaway_django  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--viewport", default="1280x720")
    args = parser.parse_args()
    width, height = (int(v) for v in args.viewport.split("x"))

    throwaway_django("workspace-bench-")
    from playwright.sync_api import sync_playwright

    from tests.factories import prompting_study

    study = prompting_study(
        n_images=1, participants=0, stagnation_limit=10_000, max_rounds=1, show_ground_truth=False
    )
    server, base = live_server()

    rng = random.Random(0)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(30_000)
        page.goto(f"{base}/s/{study.pk}/join")
        page.check("#agree")
        page.click("#consent-submit")
        page.click("#start")
        page.wait_for_function("() => document.getElementById('app').dataset.phase === 'annotate'")
        canvas = page.locator("#canvas-image")
        bbox = canvas.bounding_box()
        for i in range(args.clicks + 1):  # the first click alone is below the minimum points
            if i == 1:
                page.keyboard.press("r")
            elif i > 1:
                page.keyboard.press("g" if rng.random() < 0.5 else "r")
            seq = int(page.get_attribute("#app", "data-seq"))
            canvas.click(
                position={
                    "x": rng.uniform(2, bbox["width"] - 2),
                    "y": rng.uniform(2, bbox["height"] - 2),
                }
            )
            page.wait_for_function(
                "seq => { const a = document.getElementById('app');"
                " return a.dataset.seq === String(seq) && a.dataset.busy === '0'; }",
                arg=seq + 1,
            )
        page.wait_for_timeout(100)  # the last frame after the last mask
        timings = page.evaluate("() => window.__timings")
        posts = page.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.endsWith('/events')).map(e => e.duration)"
        )
        browser.close()
    server.terminate()
    posts = posts[1:]  # the clicks whose answer carried a mask (from the second on)
    result = {
        "bench": "workspace_click",
        "viewport": args.viewport,
        "backend": "classical (eager Celery, SQLite, live Django server)",
        "clicks": len(timings),
        "click_to_mask_drawn_ms": {
            "median": round(statistics.median(timings), 2),
            "p95": round(percentile(timings, 0.95), 2),
            "max": round(max(timings), 2),
        },
        "baseline_post_round_trip_ms": {
            "median": round(statistics.median(posts), 2),
            "p95": round(percentile(posts, 0.95), 2),
        },
        "ratio_median_vs_round_trip": round(
            statistics.median(timings) / statistics.median(posts), 3
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
