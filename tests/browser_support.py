"""Headless Chromium for the browser tests (Playwright, sync API; never downloads a browser).

`CHROMIUM` may point to another Chromium binary; without one the browser tests fail loudly
(`.ci/run` installs Debian's chromium), they are not skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium or set CHROMIUM")
    # Playwright's sync API keeps an asyncio loop on this thread; Django's ORM then refuses
    # to run here unless told that this (test-only) thread is synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(chromium):
    """A factory of pages, each in its own browser context (own cookies); all closed after the test."""
    contexts = []

    def make(viewport=(1280, 860)):
        context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        # uncaught script errors and console.error calls; a refused request (the browser's own
        # "Failed to load resource" line) is not one: the tests provoke some on purpose
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                page.errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot to tests/artifacts/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def finish_practice(page) -> None:
    """Finish the practice image as a participant does (Finish, confirm, the survey's yes) and
    wait for the first real image (both study kinds' pages). A prompting image on which the
    model showed no mask asks no question: then there is no survey to answer."""
    page.click("#finish")
    page.click("#confirm-yes")
    page.wait_for_function(
        "() => { const a = document.getElementById('app');"
        " return document.getElementById('survey').open"
        " || (a.dataset.practice === '0' && a.dataset.phase === 'annotate'); }"
    )
    if page.evaluate("() => document.getElementById('survey').open"):
        page.click("#survey-yes")
    page.wait_for_function(
        "() => { const a = document.getElementById('app');"
        " return a.dataset.practice === '0' && a.dataset.phase === 'annotate'; }"
    )
