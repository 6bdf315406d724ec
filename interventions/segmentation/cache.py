"""Image-embedding cache: one ``.npz`` per (image sha256, model id, weights sha256) on a shared
directory, written atomically (temporary file + ``os.replace``) so several worker processes can
fill it at once, plus a small in-process LRU so the click path does not read the disk."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from interventions.segmentation.backend import Embedding, SegmentationBackend

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class EmbeddingCache:
    """Disk + memory cache of ``Embedding`` objects (``memory_items`` kept in process)."""

    def __init__(self, root: str | os.PathLike[str], memory_items: int = 8) -> None:
        if memory_items < 0:
            raise ValueError(f"memory_items must be >= 0, got {memory_items}")
        self.root = Path(root)
        self.memory_items = memory_items
        self._memory: OrderedDict[str, Embedding] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(image_sha256: str, model_id: str, weights_sha256: str | None) -> str:
        """``<model id>/<image sha256>-<weights sha256 or 'noweights'>`` (a relative path)."""
        if not isinstance(image_sha256, str) or not _HEX64.fullmatch(image_sha256):
            raise ValueError(f"image_sha256 must be 64 lowercase hex digits, got {image_sha256!r}")
        if weights_sha256 is not None and not _HEX64.fullmatch(weights_sha256):
            raise ValueError(
                f"weights_sha256 must be 64 lowercase hex digits or None, got {weights_sha256!r}"
            )
        if not model_id:
            raise ValueError("model_id must be a non-empty string")
        return f"{_SAFE.sub('_', model_id)}/{image_sha256}-{weights_sha256 or 'noweights'}"

    def path(self, image_sha256: str, model_id: str, weights_sha256: str | None) -> Path:
        return self.root / (self.key(image_sha256, model_id, weights_sha256) + ".npz")

    def get(self, image_sha256: str, model_id: str, weights_sha256: str | None) -> Embedding | None:
        """The cached embedding, from memory or disk; None when absent or unreadable."""
        key = self.key(image_sha256, model_id, weights_sha256)
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        path = self.root / (key + ".npz")
        try:
            emb = Embedding.load(path)
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a truncated or foreign file counts as a miss; put() overwrites it
        if emb.model_id != model_id:
            return None
        self._remember(key, emb)
        return emb

    def put(
        self, image_sha256: str, model_id: str, weights_sha256: str | None, embedding: Embedding
    ) -> Path:
        """Write atomically: readers see the old file or the whole new one, never a part."""
        if embedding.model_id != model_id:
            raise ValueError(f"embedding belongs to model {embedding.model_id!r}, not {model_id!r}")
        key = self.key(image_sha256, model_id, weights_sha256)
        path = self.root / (key + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                embedding.save(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._remember(key, embedding)
        return path

    def get_or_compute(
        self,
        image_sha256: str,
        backend: SegmentationBackend,
        image_loader: Callable[[], np.ndarray],
    ) -> Embedding:
        """Cached embedding for this image and backend, else ``backend.embed(image_loader())``
        stored for every later caller."""
        hit = self.get(image_sha256, backend.model_id, backend.weights_sha256)
        if hit is not None:
            return hit
        emb = backend.embed(image_loader())
        self.put(image_sha256, backend.model_id, backend.weights_sha256, emb)
        return emb

    def _remember(self, key: str, emb: Embedding) -> None:
        if self.memory_items == 0:
            return
        with self._lock:
            self._memory[key] = emb
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)
