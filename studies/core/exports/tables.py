"""CSV tables inside an export archive: one cell convention for every table.

A text cell that a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a
carriage return) is written with a leading single quote, as OWASP recommends against CSV
injection; numbers are never changed (-0.5 stays -0.5). The manifest says so (`csv_cells`).
"""

from __future__ import annotations

import csv
import json
import math

from studies.core.exports.archive import ExportArchive

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_CELLS_NOTE = (
    "text cells starting with = + - @ tab or carriage return are prefixed with a single quote "
    "(OWASP CSV injection); numeric cells are unchanged"
)


def cell(value) -> object:
    """CSV cell: lists as JSON, times as ISO 8601, None and NaN as empty, formula-like text
    quoted."""
    kind = type(value)
    if kind is int or kind is bool:  # the common cases first (same results as below)
        return value
    if kind is float:
        return "" if value != value else value
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if kind is list:
        points = _points_json(value)
        if points is not None:
            return points
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _points_json(value: list) -> str | None:
    """A list of [x, y] pairs (ints or finite floats) as json.dumps writes it, without its
    per-call cost (the point lists are most of the tidy tables' cells); None for anything else."""
    parts = []
    for pair in value:
        if type(pair) is not list or len(pair) != 2:
            return None
        for v in pair:
            kind = type(v)
            if not (kind is int or (kind is float and math.isfinite(v))):
                return None
        parts.append(f"[{pair[0]!r},{pair[1]!r}]")
    return "[" + ",".join(parts) + "]"


def write_csv(archive: ExportArchive, name: str, columns, rows) -> int:
    n = 0
    with archive.open_text(name) as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        write = writer.writerow
        for row in rows:
            get = row.get
            values = []
            for c in columns:  # cell(), its common cases inline (the same cells)
                v = get(c)
                kind = type(v)
                if kind is int or kind is bool or (kind is float and v == v):
                    values.append(v)
                elif kind is str and not v.startswith(FORMULA_STARTS):
                    values.append(v)
                else:
                    values.append(cell(v))
            write(values)
            n += 1
    return n
