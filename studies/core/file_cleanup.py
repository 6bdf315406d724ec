"""Deleting deletes: a row's files go with the row, once the deletion has committed.

One mechanism for the admin, the pages and any code that deletes (a queryset's `.delete()`,
a cascade from a study or a data set): `post_delete` receivers, connected in `StudiesConfig.ready`,
note the files each deleted row names and hand them to `transaction.on_commit`. The files are
deleted after the transaction commits and never when it rolls back (the rows are still there,
so must their files be). Files go through `studies/core/storage.py` (local folders, or the
object store when STORAGE_URL is set), never by path.

What goes, per row:

- a data set image: its working image and mask, its kept originals (`datasets/<id>/originals/`),
  its two thumbnails (`thumbs/<data set id>/<image id>_{image,mask}.png`);
- a data set: whatever is left under `datasets/<id>/` and `thumbs/<id>/` (files no row names,
  e.g. thumbnails of images deleted before this code ran), and the empty folders on local disk;
- a job: its file (an export's zip);
- an intervention image analysis: its maps (.npz);
- a trust evaluation: every file under its plot folder.

A file that is already missing is no error; one the store fails to delete is logged and left
(the rows are gone by then, and a failed clean-up must not turn a committed deletion into a 500).
"""

from __future__ import annotations

import logging
import shutil

from django.db import transaction
from django.db.models.signals import post_delete

from studies.core import storage

log = logging.getLogger(__name__)

THUMB_KINDS = ("image", "mask")


def thumbnail_name(dataset_id: int, image_id: int, what: str) -> str:
    """The stored name of an image's thumbnail (views_datasets.dataset_thumbnail)."""
    return f"thumbs/{dataset_id}/{image_id}_{what}.png"


def delete_after_commit(names, folders=()) -> None:
    """Delete the media files `names` and everything under the media folders `folders` once
    the current transaction commits (at once outside a transaction); nothing on rollback."""
    names = [n for n in names if n]
    folders = [f.strip("/") for f in folders if f and f.strip("/")]
    if names or folders:
        transaction.on_commit(lambda: _delete_now(names, folders))


def delete_files_now(names, folders=()) -> None:
    """Delete the media files `names` now, and the `folders` on local disk once empty."""
    _delete_now(list(names), [], empty_folders=list(folders))


def folder_files(folder: str) -> list[str]:
    store = storage.store("media")
    try:
        subfolders, files = store.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = [f"{folder}/{f}" for f in files]
    for sub in subfolders:
        out.extend(folder_files(f"{folder}/{sub}"))
    return out


def _delete_now(names: list[str], folders: list[str], empty_folders=()) -> None:
    for folder in folders:
        try:
            names = [*names, *folder_files(folder)]
        except Exception:
            log.exception("could not list media folder %s for deletion", folder)
    for name in dict.fromkeys(names):
        try:
            storage.delete("media", name)
        except FileNotFoundError:
            pass
        except Exception:
            log.exception("could not delete media file %s", name)
    if not storage.remote():  # object stores have no folders; local disk keeps empty ones
        root = storage.local_root("media")
        for folder in [*folders, *empty_folders]:
            path = root / folder
            if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
                shutil.rmtree(path, ignore_errors=True)


def _image_deleted(sender, instance, **kwargs) -> None:
    names = [
        instance.image.name,
        instance.mask.name,
        instance.original_image.name,
        instance.original_mask.name,
        *(thumbnail_name(instance.dataset_id, instance.pk, what) for what in THUMB_KINDS),
    ]
    delete_after_commit(names)


def _dataset_deleted(sender, instance, **kwargs) -> None:
    delete_after_commit([], [f"datasets/{instance.pk}", f"thumbs/{instance.pk}"])


def _job_deleted(sender, instance, **kwargs) -> None:
    delete_after_commit([instance.file.name])


def _analysis_deleted(sender, instance, **kwargs) -> None:
    delete_after_commit([instance.maps.name])


def _trust_deleted(sender, instance, **kwargs) -> None:
    delete_after_commit([], [instance.folder] if instance.folder else [])


def connect() -> None:
    """Connect the receivers (StudiesConfig.ready)."""
    from studies.models import Dataset, DatasetImage, ImageAnalysis, Job, TrustEvaluation

    for model, receiver in (
        (DatasetImage, _image_deleted),
        (Dataset, _dataset_deleted),
        (Job, _job_deleted),
        (ImageAnalysis, _analysis_deleted),
        (TrustEvaluation, _trust_deleted),
    ):
        post_delete.connect(receiver, sender=model, dispatch_uid=f"file_cleanup.{model.__name__}")
