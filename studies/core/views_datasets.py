"""Researchers' data set pages: the list, uploading an archive (validated and imported as a
background Job, ending in a report), the import's progress and report, and a data set's page
(a paginated grid of image + mask thumbnails, counts and sizes, "new study from this data set").

Uploads stream to a temporary file (never memory) and are capped at
`settings.DATASET_UPLOAD_MAX_BYTES`; the importer (`studies.core.importers`, the same code the
command-line importers run) checks every pair in the worker.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from studies.core import storage
from studies.core.dispatch import start_job
from studies.core.importers import inspect_archive
from studies.models import Dataset, DatasetImage, Job

THUMB_PX = 160
PAGE_SIZE = 24
IMPORT_TASK = "workers.import_tasks.import_dataset"


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = Dataset.objects.annotate(
        n_images=Count("images", distinct=True), n_studies=Count("studies", distinct=True)
    ).order_by("-created_at")
    imports = Job.objects.filter(kind="import", created_by=request.user)[:10]
    return render(request, "datasets/list.html", {"datasets": datasets, "imports": imports})


def _upload_errors(request: HttpRequest) -> tuple[dict[str, str], str]:
    """Field errors of an upload (each names its field) and the clean name."""
    errors: dict[str, str] = {}
    name = (request.POST.get("name") or "").strip()
    if not name:
        errors["name"] = "name: give the data set a name"
    elif len(name) > 200:
        errors["name"] = "name: at most 200 characters"
    elif Dataset.objects.filter(name=name).exists():
        errors["name"] = f"name: a data set named {name!r} already exists"
    upload = request.FILES.get("archive")
    if upload is None:
        errors["archive"] = "archive: choose a .zip or .tar(.gz) file"
    elif upload.size > settings.DATASET_UPLOAD_MAX_BYTES:
        errors["archive"] = (
            f"archive: {upload.size} bytes is over the limit of "
            f"{settings.DATASET_UPLOAD_MAX_BYTES} bytes"
        )
    else:
        try:  # cheap: the type, the index, a bounded look; the worker reads the members
            inspect_archive(upload.temporary_file_path())
        except (ValueError, OSError) as exc:
            errors["archive"] = f"archive: {exc}"
    return errors, name


@csrf_exempt
@login_required
def dataset_upload(request: HttpRequest) -> HttpResponse:
    """The upload handler must be set before the body is read, so CSRF is checked inside."""
    if request.method == "POST":
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATASET_UPLOAD_MAX_BYTES + 1024 * 1024:
            return render(
                request,
                "datasets/upload.html",
                _upload_context(
                    {
                        "archive": f"archive: {length} bytes is over the limit of "
                        f"{settings.DATASET_UPLOAD_MAX_BYTES} bytes"
                    }
                ),
                status=400,
            )
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return _dataset_upload(request)


def _upload_context(errors: dict | None = None, name: str = "") -> dict:
    return {
        "errors": errors or {},
        "name": name,
        "max_bytes": settings.DATASET_UPLOAD_MAX_BYTES,
        "max_pixels": settings.IMPORT_MAX_PIXELS,
        "max_side": settings.IMPORT_MAX_SIDE,
        "limit_side": int(settings.IMPORT_MAX_PIXELS**0.5),
    }


@login_required
@csrf_protect
def _dataset_upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "datasets/upload.html", _upload_context())
    errors, name = _upload_errors(request)
    if errors:
        return render(request, "datasets/upload.html", _upload_context(errors, name), status=400)
    upload = request.FILES["archive"]
    relative = f"imports/{uuid.uuid4().hex}{''.join(Path(upload.name).suffixes[-2:])}"
    storage.put_file("media", relative, upload.temporary_file_path(), keep=True)
    job = start_job(
        None,
        "import",
        IMPORT_TASK,
        {"archive": relative, "name": name, "filename": upload.name, "size": upload.size},
        created_by=request.user,
    )
    return redirect("dataset-import", job_id=job.pk)


@login_required
def import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id, kind="import", created_by=request.user)
    return render(request, "datasets/import.html", {"job": job, "report": job.report})


@login_required
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    images = dataset.images.order_by("index")
    sizes = images.aggregate(
        min_w=Min("width"),
        max_w=Max("width"),
        min_h=Min("height"),
        max_h=Max("height"),
    )
    page = Paginator(images, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "datasets/detail.html",
        {
            "dataset": dataset,
            "page": page,
            "count": images.count(),
            "sizes": sizes,
            "scaled": images.exclude(scale=1.0).count(),
            "max_side": settings.IMPORT_MAX_SIDE,
            "studies": dataset.studies.all(),
            "thumb_px": THUMB_PX,
        },
    )


def _thumbnail(field, target: str, mask: bool) -> None:
    import io

    from PIL import Image

    with field.open("rb") as handle, Image.open(handle) as im:
        im = im.convert("L" if mask else "RGB")
        im.thumbnail((THUMB_PX, THUMB_PX), Image.NEAREST if mask else Image.BILINEAR)
        png = io.BytesIO()
        im.save(png, format="PNG")
    storage.put_bytes("media", target, png.getvalue())


@login_required
def dataset_thumbnail(request: HttpRequest, dataset_id: int, image_id: int, what: str):
    """An image or mask thumbnail (at most THUMB_PX a side), made once with Pillow and cached."""
    if what not in ("image", "mask"):
        raise Http404(f"unknown file {what!r}: expected image or mask")
    row = get_object_or_404(DatasetImage, pk=image_id, dataset_id=dataset_id)
    target = f"thumbs/{dataset_id}/{row.pk}_{what}.png"
    if not storage.exists("media", target):
        _thumbnail(row.image if what == "image" else row.mask, target, what == "mask")
    response = storage.file_response("media", target, "image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response
