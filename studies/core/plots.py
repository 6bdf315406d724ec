"""Researchers' plots and tables as downloads: a matplotlib Figure as PNG or SVG, a list of
dict rows as CSV (empty cells for no value, never "nan"). Shared by the kinds' analysis pages;
matplotlib only (Agg), no torch."""

from __future__ import annotations

import csv
import io
import math

from django.http import Http404, HttpResponse

PLOT_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
# The analysis pages show each plot at about its own size (550 x 360 px at 100 dpi, two to a
# row from 1100 px wide); 9 pt at 100 dpi is 12.5 px, so text stays >= 10 px down to 80 %.
MIN_FONT_PT = 9.0
DPI = 100
# one colour per source, the same on every plot: people, and automated prompts / the model
HUMAN_COLOUR = "#1558c0"
AUTOMATED_COLOUR = "#d97706"


def new_figure(width: float = 5.5, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def figure_texts(fig) -> list:
    """Every text artist the figure draws: titles, axis labels, tick labels, legends."""
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def make_readable(fig, minimum: float = MIN_FONT_PT) -> None:
    """Raise every text of the figure to at least `minimum` points."""
    for text in figure_texts(fig):
        if text.get_fontsize() < minimum:
            text.set_fontsize(minimum)


def integer_axis(axis) -> None:
    """Ticks at whole numbers only (an axis of counts: points, timesteps, trials)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def figure_response(fig, fmt: str, filename: str) -> HttpResponse:
    """The figure as `fmt` (png / svg); `?download=1` in the caller's URL names the file."""
    if fmt not in PLOT_FORMATS:
        raise Http404(f"no plot format {fmt}: expected png or svg")
    make_readable(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buffer, format=fmt, metadata=metadata)
    response = HttpResponse(buffer.getvalue(), content_type=PLOT_FORMATS[fmt])
    response["Content-Disposition"] = f'inline; filename="{filename}.{fmt}"'
    return response


def blank(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def csv_response(rows: list[dict], filename: str) -> HttpResponse:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: blank(v) for k, v in row.items()})
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response
