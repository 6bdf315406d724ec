"""The analysis plots are readable at the size the page shows them (issue 24): every text at
least 9 pt (12.5 px at the plots' 100 dpi, so >= 10 px down to 80 % of their size, which the
page keeps at 1280 wide: tests/core/test_browser_researcher.py), whole-number ticks on axes
of counts, one colour for people and another for automated prompts, no "P st1" / "D ..."."""

from __future__ import annotations

import math

import pytest

from studies.core.plots import (
    AUTOMATED_COLOUR,
    DPI,
    HUMAN_COLOUR,
    MIN_FONT_PT,
    figure_response,
    figure_texts,
)
from studies.intervention import views_analysis as intervention_plots
from studies.prompting import views_analysis as prompting_plots


def ci(mean: float) -> dict:
    return {"mean_iou": mean, "ci_low": mean - 0.1, "ci_high": min(1.0, mean + 0.1)}


PROMPTING_TABLES = {
    "iou_by_points": [{"points": p, **ci(0.5 + p / 20)} for p in (2, 3, 4, 5)],
    "iou_by_timestep": [{"timestep": t, **ci(0.6 + t / 20)} for t in (0, 1, 2)],
    "assignments": [
        {"T": 3, "stop_reason": "finished", "best": 0.9, "final": 0.8},
        {"T": 5, "stop_reason": "stagnation", "best": 0.7, "final": 0.7},
    ],
    "participants": [
        {"group": "st1", "share_overprompted": 0.5},
        {"group": "st2", "share_overprompted": 0.0},
    ],
    "datasets": [{"group": "Clean shapes", "share_overprompted": 0.25}],
    "human_vs_baselines": [
        {"method": "human first", "n": 4, **ci(0.6)},
        {"method": "human best", "n": 4, **ci(0.9)},
        {"method": "auto random", "n": 4, **ci(0.5)},
        {"method": "auto kmedoids", "n": 4, **ci(0.7)},
    ],
}
TRIAL = {"operation": "delete", "substrate": "zero", "flipped": True, "since_start_s": 0.0}
INTERVENTION_TABLES = {
    "flip_rates": [
        {"operation": op, "substrate": "zero", "flip_rate": 0.5, "ci_low": 0.2, "ci_high": 0.8}
        for op in ("delete", "insert")
    ],
    "area_to_flip": [
        {"model_flip_gradcam_order": 0.2, "human_flip_min": 0.1},
        {"model_flip_gradcam_order": 0.3, "human_flip_min": 0.4},
    ],
    "agreement": [
        {"measure": m, "operation": op, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        for m in ("gradcam_iou", "voice_overlap")
        for op in ("delete", "insert")
    ],
    "timelines": [
        {**TRIAL, "participant": code, "since_start_s": t, "flipped": t > 2}
        for code in ("st1", "st2")
        for t in (0.0, 1.5, 3.0)
    ],
}
PLOTS = [(prompting_plots, name, PROMPTING_TABLES) for name in prompting_plots.PLOTS] + [
    (intervention_plots, name, INTERVENTION_TABLES) for name in intervention_plots.PLOTS
]


def drawn(module, name, tables):
    fig = module.draw_plot(name, tables)
    assert figure_response(fig, "svg", name).status_code == 200  # as the page gets it
    return fig


@pytest.mark.parametrize("module, name, tables", PLOTS, ids=[p[1] for p in PLOTS])
def test_every_text_is_at_least_nine_points(module, name, tables):
    fig = drawn(module, name, tables)
    sizes = {t.get_text(): t.get_fontsize() for t in figure_texts(fig)}
    assert sizes and min(sizes.values()) >= MIN_FONT_PT, sizes
    assert MIN_FONT_PT * DPI / 72 >= 12.5  # px at full size
    # no "P st1" / "D Clean shapes" style prefixes in any label
    assert not [t for t in sizes if t.startswith(("P ", "D "))], sorted(sizes)


@pytest.mark.parametrize("name", ["iou_by_points", "iou_by_timestep"])
def test_axes_of_counts_have_whole_number_ticks(name):
    ax = drawn(prompting_plots, name, PROMPTING_TABLES).axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(math.isclose(t, round(t)) for t in ticks), ticks


def test_people_and_automated_prompts_have_their_own_colours():
    from matplotlib.colors import to_hex

    ax = drawn(prompting_plots, "human_vs_baselines", PROMPTING_TABLES).axes[0]
    colours = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colours == [HUMAN_COLOUR] * 2 + [AUTOMATED_COLOUR] * 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["people", "automated prompts"]


def test_overprompted_share_tells_participants_from_data_sets_by_colour():
    ax = drawn(prompting_plots, "overprompted_share", PROMPTING_TABLES).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["st1", "st2", "Clean shapes"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["participant", "data set"]
