"""Exports of a study (DESIGN.md "Exports"): pointprompt, tidy, coco; each with manifest.json.

`run_export(study, fmt, out_path, progress=callback)` writes one zip, entry by entry, and
returns the manifest head. `run_export_job(job_id)` does the same for an ExportJob row, with
progress on the row (the Celery task in workers/export_tasks.py calls it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .archive import ExportArchive
from .coco import export_coco
from .manifest import write_manifest
from .pointprompt import export_pointprompt
from .tidy import export_tidy

FORMATS: dict[str, Callable] = {
    "pointprompt": export_pointprompt,
    "tidy": export_tidy,
    "coco": export_coco,
}

Progress = Callable[[int, int], None]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def run_export(study, fmt: str, out_path: str | Path, progress: Progress | None = None) -> dict:
    """Write `study` as `fmt` into the zip `out_path` (replaced atomically); return the manifest head."""
    check_format(fmt)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    archive = ExportArchive(partial)
    try:
        counts = FORMATS[fmt](study, archive, progress)
        head = write_manifest(archive, study, fmt, counts)
        archive.close()
        partial.replace(out_path)
    except BaseException:
        archive.close()
        partial.unlink(missing_ok=True)
        raise
    return head


class ThrottledProgress:
    """Progress callback that writes to the ExportJob row at most every `every_s` seconds
    (and every `every_n` units), so a large export does not spend its time on UPDATEs."""

    def __init__(self, job_id: int, every_s: float = 1.0, every_n: int = 200):
        self.job_id = job_id
        self.every_s = every_s
        self.every_n = every_n
        self.last_time = 0.0
        self.last_done = -1

    def __call__(self, done: int, total: int) -> None:
        from ..models import ExportJob

        now = time.monotonic()
        if (
            done == total
            or done - self.last_done >= self.every_n
            or now - self.last_time >= self.every_s
        ):
            fraction = done / total if total else 1.0
            ExportJob.objects.filter(pk=self.job_id).update(progress=min(0.99, fraction))
            self.last_time, self.last_done = now, done


def run_export_job(job_id: int) -> dict:
    """Run one ExportJob: status running -> done (file saved under MEDIA_ROOT/exports) or failed."""
    from django.conf import settings
    from django.utils import timezone

    from ..models import ExportJob

    job = ExportJob.objects.select_related("study__dataset", "study__model").get(pk=job_id)
    if job.status == "done" and job.file:
        return {"job": job_id, "file": job.file.name}  # safe to run twice
    ExportJob.objects.filter(pk=job_id).update(status="running", progress=0.0, error="")
    relative = f"exports/study{job.study_id}_{job.format}_{job.pk}.zip"
    try:
        head = run_export(
            job.study, job.format, Path(settings.MEDIA_ROOT) / relative, ThrottledProgress(job_id)
        )
    except Exception as exc:
        ExportJob.objects.filter(pk=job_id).update(
            status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    ExportJob.objects.filter(pk=job_id).update(
        status="done", progress=1.0, file=relative, finished_at=timezone.now()
    )
    return {"job": job_id, "file": relative, "counts": head["counts"]}
