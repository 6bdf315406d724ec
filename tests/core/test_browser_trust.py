"""The trust evaluation pages in headless Chromium: start one from the form (the eager batch job
runs it), the finished page with its table and plots; a queued one's page follows the job live
and shows the results once it is done. Screenshots at 1280x720, 1920x1080 and 800 wide."""

from __future__ import annotations

import pytest

from studies.models import TrustEvaluation
from tests.browser_support import screenshot
from tests.core.test_trust_evaluation import N_IMAGES, labelled_dataset
from tests.factories import researcher
from tests.intervention_fixtures import DEMO_WEIGHTS, classifier_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080), "800w": (800, 900)}
LOADED = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"


def login(page, base: str, user) -> None:
    page.goto(f"{base}/accounts/login/?next=/studies/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", f"pw-{user.username}")
    page.click("#login-submit")
    page.wait_for_url("**/studies/")


def test_trust_evaluation_pages(live_server, new_page):
    alice = researcher("alice")
    spec, dataset = classifier_spec(DEMO_WEIGHTS), labelled_dataset()

    page = new_page(SIZES["1280x720"])
    login(page, live_server.url, alice)
    page.click("#nav-trust")
    page.click("#new-evaluation")
    page.select_option("select[name=model]", str(spec.pk))
    page.select_option("select[name=dataset]", str(dataset.pk))
    page.fill("input[name=batch_size]", "4")
    for name, size in SIZES.items():
        page.set_viewport_size({"width": size[0], "height": size[1]})
        screenshot(page, f"trust_form_{name}")
    page.click("#start-evaluation")  # eager Celery: the job runs before the redirect
    page.wait_for_selector("#trust-summary")
    evaluation = TrustEvaluation.objects.get()
    assert page.url.endswith(f"/trust/{evaluation.pk}/")
    assert page.locator("#trust-summary tbody tr").count() == 12
    assert page.locator("#trust-count").inner_text() == f"{N_IMAGES}/{N_IMAGES} images"
    page.wait_for_function(LOADED)
    assert page.locator("#plot-table").is_visible() and page.locator("#plot-scatter").is_visible()
    for name, size in SIZES.items():
        page.set_viewport_size({"width": size[0], "height": size[1]})
        screenshot(page, f"trust_detail_{name}")
    page.click("#nav-trust")
    page.wait_for_selector("#evaluation-table")
    screenshot(page, "trust_list_800w")

    # a queued evaluation's page follows the job and reloads with the results when it is done
    queued = TrustEvaluation.objects.create(
        model=spec, dataset=dataset, created_by=alice, params={"batch_size": 4, "mcd_seed": 0}
    )
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server.url}/trust/{queued.pk}/")
    assert page.locator("#trust-status").inner_text() == "Queued"
    screenshot(page, "trust_queued_1280x720")
    from workers.trust_tasks import run_trust_evaluation

    run_trust_evaluation(queued.pk)
    page.wait_for_selector("#trust-summary", timeout=20_000)
    assert page.locator("#trust-status").inner_text() == "Done"
    assert page.errors == []
