"""Per-process caches a worker keeps: loaded models, ground-truth masks, image arrays.

A worker process loads each model once and keeps it; image embeddings live in the shared disk
cache (`EMBEDDING_CACHE_DIR`, keyed by image sha256 + model id + weights sha256) with a small
in-memory LRU in front of it.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

_lock = threading.Lock()
_backends: dict[tuple[int, str], object] = {}
_embedding_cache = None


def backend_for(spec) -> object:
    """The segmentation backend of a ModelSpec row, loaded once per process."""
    from interventions.segmentation import BackendSpec, get_backend

    key = (spec.pk, spec.weights_sha256 or "")
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = get_backend(
                BackendSpec(
                    kind=spec.kind,
                    architecture=spec.architecture,
                    weights_path=spec.weights_path or None,
                )
            )
            _backends[key] = backend
        return backend


def embedding_cache():
    from interventions.segmentation.cache import EmbeddingCache

    global _embedding_cache
    with _lock:
        if _embedding_cache is None or Path(_embedding_cache.root) != Path(
            settings.EMBEDDING_CACHE_DIR
        ):
            _embedding_cache = EmbeddingCache(Path(settings.EMBEDDING_CACHE_DIR))
        return _embedding_cache


def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@lru_cache(maxsize=64)
def ground_truth(path: str) -> np.ndarray:
    """The ground-truth mask as bool H x W (cached per process, read-only)."""
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L")) > 127
    mask.setflags(write=False)
    return mask


def clear() -> None:
    """Forget everything this process cached: models, rows, masks, maps (tests, where row ids
    and MEDIA_ROOT are reused from one test to the next)."""
    global _embedding_cache
    from workers import intervention_tasks, tasks

    with _lock:
        _backends.clear()
        _embedding_cache = None
    ground_truth.cache_clear()
    tasks._image_files.cache_clear()
    tasks._spec.cache_clear()
    intervention_tasks._classifiers.clear()
    intervention_tasks._maps_cache.clear()
    intervention_tasks._pixels.cache_clear()
