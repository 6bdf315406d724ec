"""A worker SIGKILLed mid-import leaves no file that no row names once the job reruns (issue 25).

The import task runs in a forked child that SIGKILLs itself after some pairs' files are written:
no clean-up runs and the child's rows die with it (as PostgreSQL rolls back a killed worker's
transaction). The requeued job then runs here: the journal (studies/core/import_staging.py) names
the folder the killed run wrote into, and what no row names there is deleted."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from PIL import Image

from studies.core import import_staging, storage
from studies.models import DatasetImage, Job
from tests.core.test_dataset_upload import write_zip
from tests.factories import researcher

pytestmark = pytest.mark.django_db


def png(array) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def archive_files(n: int = 6) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rgb = np.full((6, 8, 3), 20 * i, np.uint8)
        m = np.zeros((6, 8), np.uint8)
        m[1 : 3 + i % 3, 2:6] = 255
        files[f"d/images/p{i}.png"] = png(rgb)
        files[f"d/masks/p{i}.png"] = png(m)
    return files


def media_files(media) -> set[str]:
    return {
        str(p.relative_to(media))
        for p in (media / "datasets").rglob("*")
        if p.is_file() and not p.name.startswith(".tmp-")
    }


def named_files() -> set[str]:
    out = set()
    for row in DatasetImage.objects.values_list("image", "mask", "original_image", "original_mask"):
        out.update(n for n in row if n)
    return out


def test_a_killed_import_leaves_no_orphan_files_after_the_rerun(tmp_path, media, settings):
    from studies.core import importers
    from workers.import_tasks import import_dataset

    settings.IMPORT_MAX_PIXELS = 1000
    stored = "uploads/killed.zip"
    storage.put_file("media", stored, write_zip(tmp_path / "a.zip", archive_files()), keep=True)
    job = Job.objects.create(
        kind="import", params={"archive": stored, "name": "Killed"}, created_by=researcher()
    )
    pid = os.fork()
    if pid == 0:  # the worker: killed while pair 4 is checked, pairs 1-3 written
        try:
            real, calls = importers.check_pair_files, []

            def killed_midway(*args, **kwargs):
                calls.append(1)
                if len(calls) == 4:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)

            importers.check_pair_files = killed_midway
            import_dataset.run(job.pk)
        finally:
            os._exit(3)  # never reached when killed; never return into pytest
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    left = media_files(media)
    orphans = left - {import_staging.journal_name(job.pk)}
    assert len(orphans) >= 4, left  # the killed run's files, named by no row
    assert import_staging.journal_name(job.pk) in left

    result = import_dataset.run(job.pk)  # the requeued job
    job.refresh_from_db()
    assert job.status == "done" and result["accepted"] == 6
    assert media_files(media) == named_files(), "files no row names after the rerun"
    assert len(named_files()) == 24  # 6 pairs: working image and mask, both originals
