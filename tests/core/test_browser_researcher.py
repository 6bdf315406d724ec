"""What the researcher sees (issue 24), in headless Chromium against a live server: the pages a
researcher reads (study list, both kinds' study and analysis pages, an intervention replay, the
new-study form) have nothing cut at 800 wide, no template comment printed, plots shown at
about their own size at 1280 wide; the form shows only the chosen kind's options and models.
Screenshots of each at 1280x720, 1920x1080 and 800 wide go to tests/artifacts/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from studies.models import ModelSpec
from tests.browser_support import screenshot
from tests.core.test_browser_trust import login
from tests.core.test_researcher_view import add_trial, classifier_study
from tests.export_sessions import run_sessions
from tests.factories import classical_spec, prompting_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080), "800w": (800, 900)}

# Everything the page cuts: the page scrolling sideways, an element running past the window,
# or a box (a scrolling table wrapper) hiding part of its content.
CLIPPED = """() => {
  const out = [], vw = document.documentElement.clientWidth, past = new Set();
  if (document.documentElement.scrollWidth > vw)
    out.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${vw})`);
  for (const el of document.querySelectorAll("body *")) {
    const style = getComputedStyle(el), r = el.getBoundingClientRect();
    if (style.display === "none" || style.visibility === "hidden" || !r.width || !r.height) continue;
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (typeof el.className === "string" && el.className ? "." + el.className.replace(/ +/g, ".") : "");
    if (["auto", "scroll", "hidden", "clip"].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
      out.push(`${name} hides ${el.scrollWidth - el.clientWidth} px of its content sideways`);
    if (r.right > vw + 1) { past.add(el); if (!past.has(el.parentElement)) out.push(`${name} ends at ${Math.round(r.right)} px`); }
  }
  return out;
}"""
# the smallest ratio of an analysis plot's shown width to its own
PLOT_SCALE = """() => Math.min(...[...document.querySelectorAll('#plots img')].map(
  i => i.getBoundingClientRect().width / i.naturalWidth))"""
LOADED = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"


def look(page, url: str, name: str) -> None:
    """Open `url`, screenshot it at the three sizes, and check nothing is cut at 800 wide."""
    page.goto(url)
    page.wait_for_function(LOADED)
    for label, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        screenshot(page, f"researcher_{name}_{label}")
    assert page.evaluate(CLIPPED) == [], name  # at 800 wide, the last size
    assert "{#" not in page.inner_text("body"), name
    page.set_viewport_size({"width": 1280, "height": 720})


def test_the_researchers_pages_at_three_sizes(live_server, new_page):
    prompting = prompting_study(n_images=3, participants=2)
    run_sessions(prompting, stagnate=False)
    intervention = classifier_study(n_images=3, participants=2)
    assignment = intervention.participants.order_by("number").first().assignments.first()
    t0 = timezone.now() - timedelta(minutes=2)
    for seq in range(3):
        add_trial(assignment, seq, t0 + timedelta(seconds=2 * seq), flipped=seq == 2)

    page = new_page(SIZES["1280x720"])
    login(page, live_server.url, prompting.owner)
    base = live_server.url
    look(page, f"{base}/studies/", "study_list")
    assert page.locator("#study-table td.study-kind").all_inner_texts() == [
        "Intervention",
        "Prompting",
    ]
    for study, kind in ((prompting, "prompting"), (intervention, "intervention")):
        look(page, f"{base}/studies/{study.pk}/", f"{kind}_study")
        assert page.locator("#protocol .setting").count() == len(study.kind_spec.options)
        look(page, f"{base}/studies/{study.pk}/analysis", f"{kind}_analysis")
        assert page.evaluate(PLOT_SCALE) >= 0.8, kind  # 9 pt text stays >= 10 px
    look(page, f"{base}/studies/{intervention.pk}/intervention/", "interventions")
    look(page, f"{base}/studies/{intervention.pk}/assignments/{assignment.pk}/replay", "replay")
    assert page.locator("#replay-trials .trial").count() == 3
    assert page.errors == []


def test_the_form_shows_only_the_chosen_kinds_options_and_models(live_server, new_page):
    segmenter = classical_spec()
    study = classifier_study(participants=0)  # creates the classifier "cnn" and a data set
    classifier = ModelSpec.objects.get(kind="classifier")
    page = new_page(SIZES["1280x720"])
    login(page, live_server.url, study.owner)
    look(page, f"{live_server.url}/studies/new", "study_form")

    def visible_models() -> list[str]:
        return page.eval_on_selector(
            "#id_model", "s => [...s.options].filter(o => o.value && !o.hidden).map(o => o.value)"
        )

    prompting_only = page.locator('.protocol-section[data-kinds="prompting"]')
    intervention_only = page.locator('.protocol-section[data-kinds="intervention"]')
    assert prompting_only.is_visible() and not intervention_only.is_visible()
    assert visible_models() == [str(segmenter.pk)]
    page.select_option("#id_model", str(segmenter.pk))

    page.select_option("#id_kind", "intervention")
    assert intervention_only.is_visible() and not prompting_only.is_visible()
    assert visible_models() == [str(classifier.pk)]
    assert page.eval_on_selector("#id_model", "s => s.value") == ""  # the segmenter is unset
    finish = page.locator('label[for="id_protocol_min_timesteps"]')
    assert finish.inner_text() == "Trials before an image can be finished"
    assert page.locator("#id_protocol_substrate option:checked").inner_text() == (
        "The data set's mean colour (zero input)"
    )
    for label, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        screenshot(page, f"researcher_study_form_intervention_{label}")
    assert page.evaluate(CLIPPED) == []
    page.select_option("#id_kind", "prompting")
    assert finish.inner_text() == "Predictions before an image can be finished"
    assert page.errors == []
