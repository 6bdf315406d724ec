"""A killed import leaves no file that no row names (issue 25).

An import writes its files while its one transaction is open (studies/core/datasets.py). A
worker SIGKILLed mid-import runs no clean-up: PostgreSQL rolls the rows back and the files it
had written stay, named by no row. So the import task keeps a journal per job, in the media
area beside the data sets: `datasets/staging/job<id>.json`, the folder (`datasets/<data set
id>`) its files go to, written before the first file (`record`). The journal goes once the
import ends either way (`finish`: the import's own clean-up ran). A journal that is still there
when the job starts (a requeued job after a kill: `acks_late`, `reject_on_worker_lost`) names a
folder the killed run wrote into; `clean_stale` deletes every file there that no data set image
row names (none, on PostgreSQL, whose ids are never given out twice; on SQLite a later data set
may reuse the id, and its files, named by its rows, stay).
"""

from __future__ import annotations

import json

from studies.core import storage
from studies.core.file_cleanup import delete_files_now, folder_files

STAGING = "datasets/staging"


def journal_name(job_id: int) -> str:
    return f"{STAGING}/job{int(job_id)}.json"


def record(job_id: int, folder: str) -> None:
    """Journal that job `job_id` is about to write into the media folder `folder`."""
    storage.put_bytes("media", journal_name(job_id), json.dumps({"folders": [folder]}).encode())


def finish(job_id: int) -> None:
    """The import ended (its own clean-up ran, or it committed): the journal goes."""
    name = journal_name(job_id)
    if storage.exists("media", name):
        storage.delete("media", name)


def clean_stale(job_id: int) -> int:
    """Delete what an earlier, killed run of job `job_id` left: the files in its journaled
    folders that no data set image row names. Returns how many files were deleted."""
    from django.db.models import Q

    from studies.models import DatasetImage

    name = journal_name(job_id)
    if not storage.exists("media", name):
        return 0
    with storage.open_stream("media", name) as stream:
        folders = json.loads(stream.read() or b"{}").get("folders", [])
    orphans: list[str] = []
    for folder in folders:
        if not folder.startswith("datasets/") or folder.startswith(f"{STAGING}"):
            continue  # only a data set's own folder
        files = folder_files(folder)
        if not files:
            continue
        fields = ("image", "mask", "original_image", "original_mask")
        named = set()
        query = Q()
        for field in fields:
            query |= Q(**{f"{field}__in": files})
        for row in DatasetImage.objects.filter(query).values_list(*fields):
            named.update(row)
        orphans.extend(f for f in files if f not in named)
    delete_files_now(orphans, [f for f in folders if f.startswith("datasets/")])
    storage.delete("media", name)
    return len(orphans)
