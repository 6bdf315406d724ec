"""The export framework: formats by name, one zip per export, a manifest as its last entry.

`run_export(study, fmt, out_path, progress=callback)` writes one zip, entry by entry (replaced
atomically), and returns the manifest head. A format is a function
`(study, archive, progress) -> counts`; `FORMATS` names each by its dotted path, so this
package imports no kind (the batch task `workers.export_tasks.export_study` runs it as a Job).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.utils.module_loading import import_string

from studies.core.exports.archive import ExportArchive
from studies.core.exports.manifest import write_manifest

FORMATS: dict[str, str] = {
    "pointprompt": "studies.prompting.exports.pointprompt.export_pointprompt",
    "tidy": "studies.prompting.exports.tidy.export_tidy",
    "coco": "studies.prompting.exports.coco.export_coco",
}
FORMAT_LABELS = {"pointprompt": "PointPrompt", "tidy": "Tidy tables", "coco": "COCO"}

Progress = Callable[[int, int], None]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def run_export(study, fmt: str, out_path: str | Path, progress: Progress | None = None) -> dict:
    """Write `study` as `fmt` into the zip `out_path` (replaced atomically); return the manifest head."""
    writer = import_string(FORMATS[check_format(fmt)])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    archive = ExportArchive(partial)
    try:
        counts = writer(study, archive, progress)
        head = write_manifest(archive, study, fmt, counts)
        archive.close()
        partial.replace(out_path)
    except BaseException:
        archive.close()
        partial.unlink(missing_ok=True)
        raise
    return head
