"""The analysis pages' arm views (docs/experiments.md "Analysis by arm"): `?arm=` on any plot or
CSV of an analysis page gives that arm's figure; the comparison section's CSVs and plot."""

from __future__ import annotations

import re

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse

from studies.core import arm_analysis, design
from studies.core.plots import csv_response, figure_response, new_figure
from studies.core.views_researcher import researcher_study


def requested_arm(request: HttpRequest, study) -> str | None:
    """The `arm` query parameter, checked against the study's arms (404 naming it if unknown);
    None when absent."""
    name = request.GET.get("arm")
    if name is None:
        return None
    if design.arm_by_name(study, name) is None:
        raise Http404(f"arm {name!r}: this study has no such arm")
    return name


def arm_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "arm"


def arm_plots(study, plots: list) -> dict:
    """For a study with a design: each plot once per arm, side by side (the template's
    `arm_plots`: [(plot, title, table, [arm names])])."""
    if not design.has_design(study):
        return {}
    names = design.arm_names(study)
    return {"arm_plots": [(p, title, table, names) for p, title, table in plots]}


@login_required
def comparison_csv(request: HttpRequest, study_id: int, table: str) -> HttpResponse:
    study = researcher_study(request, study_id)
    if table not in arm_analysis.TABLES:
        raise Http404(f"no table {table}: expected one of {', '.join(arm_analysis.TABLES)}")
    if not design.has_design(study):
        raise Http404("this study has no design: there are no arms to compare")
    return csv_response(arm_analysis.TABLES[table](study), f"study{study.pk}_{table}")


@login_required
def comparison_plot(request: HttpRequest, study_id: int, fmt: str) -> HttpResponse:
    study = researcher_study(request, study_id)
    if not design.has_design(study):
        raise Http404("this study has no design: there are no arms to compare")
    rows = arm_analysis.comparison_rows(study)
    panels = len({r["outcome"] for r in rows}) or 1
    arms = max(1, len(design.arm_names(study)) - 1)
    fig = new_figure(7.5, 1.1 + panels * (0.6 + 0.45 * arms))
    arm_analysis.draw_comparison(fig, rows)
    return figure_response(fig, fmt, f"study{study.pk}_arm_comparison")
