"""Where the platform's files live, for the web and for workers on any machine.

Two areas, each a Django storage:

- `media` (`storages["default"]`): data set images and masks, thumbnails, uploaded archives,
  exports, trust plots, intervention maps;
- `embeddings`: the image-embedding cache (`<model id>/<image sha256>-<weights sha256>.npz`)
  and the browser decoder's files (`decoders/...samdec`, `browser/...f16`).

On the local file system (the default, `make demo`) the areas are the folders `MEDIA_ROOT`
and `EMBEDDING_CACHE_DIR`, and every function here is the plain file operation it was before.
With object storage configured (`STORAGE_URL`, config/storage_url.py) both areas are prefixes
of one S3 bucket, and `MEDIA_ROOT` / `EMBEDDING_CACHE_DIR` become this machine's read-through
copies: `local_copy` downloads a stored file once and keeps it, least recently used first out
when a folder grows past `LOCAL_CACHE_MAX_BYTES`. Stored names are content or job addressed
and never rewritten with other bytes, so a local copy never goes stale.

A task gets ids and stored names, never a path on the web's disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

AREAS = ("media", "embeddings")
CHUNK = 1024 * 1024


def remote() -> bool:
    """True when the areas live in object storage (STORAGE_URL is set)."""
    return bool(getattr(settings, "OBJECT_STORAGE", None))


def store(area: str) -> Storage:
    """The Django storage of an area."""
    if area == "media":
        return storages["default"]
    if area == "embeddings":
        if remote():
            return storages["embeddings"]
        return FileSystemStorage(location=settings.EMBEDDING_CACHE_DIR)
    raise ValueError(f"unknown storage area {area!r}: expected one of {', '.join(AREAS)}")


def local_root(area: str) -> Path:
    """This machine's folder of an area: the area itself (local) or its read-through copy."""
    store(area)  # checks the name
    return Path(settings.MEDIA_ROOT if area == "media" else settings.EMBEDDING_CACHE_DIR)


def _checked(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or ".." in parts or "\\" in name or "\x00" in name:
        raise ValueError(f"not a stored file name: {name!r}")
    return name


def local_path(area: str, name: str) -> Path:
    """Where `name` is (local) or would be copied (remote) on this machine."""
    return local_root(area) / _checked(name)


def exists(area: str, name: str) -> bool:
    return store(area).exists(_checked(name))


def size(area: str, name: str) -> int:
    return store(area).size(_checked(name))


def local_copy(area: str, name: str) -> Path:
    """A file on this machine with the stored bytes of `name`: the file itself on the local
    file system; otherwise a copy downloaded once (atomically) into the area's local folder.
    Raises FileNotFoundError when nothing is stored under that name."""
    path = local_path(area, name)
    if not remote():
        return path
    if path.is_file():
        os.utime(path)  # recently used: evicted last
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter_chunks(area, name):
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _local_cache(local_root(area)).added(path.stat().st_size)
    return path


def iter_chunks(area: str, name: str, chunk: int = CHUNK) -> Iterator[bytes]:
    """The stored bytes in chunks (flat memory at any size)."""
    handle = open_stream(area, name)
    try:
        while data := handle.read(chunk):
            yield data
    finally:
        handle.close()


def open_stream(area: str, name: str):
    """A read-only file-like object over the stored bytes that never holds the whole file:
    the file itself locally; S3's streaming body otherwise (django-storages' own S3File would
    first copy the whole object into memory)."""
    name = _checked(name)
    storage = store(area)
    if not remote():
        return storage.open(name, "rb")
    from botocore.exceptions import ClientError
    from storages.utils import clean_name

    key = storage._normalize_name(clean_name(name))  # the object's key in the bucket
    try:
        return storage.bucket.Object(key).get()["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"nothing stored under {name!r}") from None
        raise


def put_file(area: str, name: str, source: str | os.PathLike[str], *, keep: bool = False) -> str:
    """Store the file `source` as `name`, replacing what was there. Locally the file is moved
    (or copied, with `keep`) into place atomically; remotely it is uploaded (multipart for big
    files, memory flat) and, unless `keep`, the local file removed. Returns `name`."""
    source = Path(source)
    name = _checked(name)
    if not remote():
        target = local_path(area, name)
        if source.resolve() == target.resolve():
            return name
        target.parent.mkdir(parents=True, exist_ok=True)
        if keep:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        else:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            shutil.move(source, tmp)
            os.replace(tmp, target)
        return name
    with source.open("rb") as handle:
        stored = store(area).save(name, File(handle, name=name))
    if stored != name:
        raise RuntimeError(f"the store renamed {name!r} to {stored!r}")
    if not keep:
        source.unlink(missing_ok=True)
    return name


def put_bytes(area: str, name: str, data: bytes) -> str:
    """Store `data` as `name` (atomically: readers see the old bytes or all the new ones)."""
    name = _checked(name)
    if not remote():
        target = local_path(area, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return name
    stored = store(area).save(name, ContentFile(data, name=name))
    if stored != name:
        raise RuntimeError(f"the store renamed {name!r} to {stored!r}")
    return name


def delete(area: str, name: str) -> None:
    store(area).delete(_checked(name))


def staging_path(area: str, name: str) -> Path:
    """Where a task writes a file it will `put_file` as `name`: the final place locally (no
    copy), a private temporary folder on this machine otherwise."""
    if not remote():
        path = local_path(area, name)
    else:
        path = Path(tempfile.mkdtemp(prefix="intervene-stage-")) / PurePosixPath(name).name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def presigned_url(area: str, name: str, filename: str, expire_s: int = 300) -> str | None:
    """A short-lived download link straight from the store (None on the local file system)."""
    if not remote():
        return None
    return store(area).url(
        _checked(name),
        parameters={"ResponseContentDisposition": f'attachment; filename="{filename}"'},
        expire=expire_s,
    )


def file_response(
    area: str,
    name: str,
    content_type: str,
    *,
    as_attachment: bool = False,
    filename: str | None = None,
):
    """A streamed response with the stored bytes (the access check is the caller's)."""
    from django.http import FileResponse, StreamingHttpResponse
    from django.utils.http import content_disposition_header

    if not remote():
        return FileResponse(
            store(area).open(_checked(name), "rb"),
            content_type=content_type,
            as_attachment=as_attachment,
            filename=filename or PurePosixPath(name).name,
        )
    length = size(area, name)
    response = StreamingHttpResponse(iter_chunks(area, name), content_type=content_type)
    response["Content-Length"] = str(length)
    disposition = content_disposition_header(as_attachment, filename or PurePosixPath(name).name)
    if disposition:
        response["Content-Disposition"] = disposition
    return response


class LocalCache:
    """Keeps a folder of downloaded copies under a size: when it grows past `max_bytes`, the
    least recently used files (oldest modification time: `local_copy` touches on each use) go
    until it is at 90%. The running total is this process's estimate, re-read from disk at each
    eviction, so several processes sharing the folder stay within the bound too."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._bytes = self._scan_total()
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        for folder, _, names in os.walk(self.root):
            for n in names:
                if n.startswith((".download-", ".tmp-")):
                    continue
                path = Path(folder) / n
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                found.append((st.st_mtime, st.st_size, path))
        return found

    def _scan_total(self) -> int:
        return sum(size for _, size, _ in self._files())

    def added(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
            if self._bytes <= self.max_bytes:
                return
            files = sorted(self._files())
            total = sum(size for _, size, _ in files)
            for _, size, path in files:
                if total <= 0.9 * self.max_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= size
            self._bytes = total


_caches: dict[tuple[str, int], LocalCache] = {}
_caches_lock = threading.Lock()


def _local_cache(root: Path) -> LocalCache:
    key = (str(root), settings.LOCAL_CACHE_MAX_BYTES)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = LocalCache(root, settings.LOCAL_CACHE_MAX_BYTES)
        return cache


def note_local_file(area: str, path: Path) -> None:
    """Count a file written into an area's local copy folder (remote mode) towards its bound."""
    if remote():
        _local_cache(local_root(area)).added(path.stat().st_size)
