"""CSV tables inside an export archive: one cell convention for every table."""

from __future__ import annotations

import csv
import json
import math

from studies.core.exports.archive import ExportArchive


def cell(value) -> object:
    """CSV cell: lists as JSON, times as ISO 8601, None and NaN as empty."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def write_csv(archive: ExportArchive, name: str, columns, rows) -> int:
    n = 0
    with archive.open_text(name) as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
            n += 1
    return n
