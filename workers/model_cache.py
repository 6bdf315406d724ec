"""Every per-process cache a worker keeps, in one place: loaded segmentation backends and
classifiers, ModelSpec rows, image files and pixels, ground-truth masks, explanation maps.

A worker process loads each model once and keeps it; image embeddings live in the shared disk
cache (`EMBEDDING_CACHE_DIR`, keyed by image sha256 + model id + weights sha256) with a small
in-memory LRU in front of it. With object storage (studies/core/storage.py) the files come from
the store: images and masks through this machine's read-through copy of `MEDIA_ROOT`, and
embeddings through `StoredEmbeddingCache` (local copy first, the store second, computed last;
each computed embedding written to the store once), so a worker on another host warms itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

_lock = threading.Lock()
_backends: dict[tuple[int, str], object] = {}
_embedding_cache = None
_classifiers: dict[tuple[int, str], object] = {}
_maps: OrderedDict[tuple, dict] = OrderedDict()
MAPS_CACHE_SIZE = 256


@lru_cache(maxsize=4096)
def image_files(image_id: int) -> tuple[str, str, str]:
    """(image path, mask path, sha256) of a dataset image on this machine (a local copy when
    the files are in object storage); images are immutable once stored."""
    from studies.core.storage import local_copy
    from studies.models import DatasetImage

    image = DatasetImage.objects.get(pk=image_id)
    return (
        str(local_copy("media", image.image.name)),
        str(local_copy("media", image.mask.name)),
        image.sha256,
    )


def computed_maps(key: tuple, compute: Callable[[], dict]) -> dict:
    """Explanation maps computed in this process, in a small LRU keyed by
    (spec id, weights sha256, image sha256)."""
    with _lock:
        if key in _maps:
            _maps.move_to_end(key)
            return _maps[key]
    maps = compute()
    with _lock:
        _maps[key] = maps
        while len(_maps) > MAPS_CACHE_SIZE:
            _maps.popitem(last=False)
    return maps


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
    from studies.core.storage import remote

    global _embedding_cache
    with _lock:
        if _embedding_cache is None or Path(_embedding_cache.root) != Path(
            settings.EMBEDDING_CACHE_DIR
        ):
            kind = stored_embedding_cache_class() if remote() else EmbeddingCache
            _embedding_cache = kind(Path(settings.EMBEDDING_CACHE_DIR))
        return _embedding_cache


def stored_embedding_cache_class():
    """`EmbeddingCache` backed by the `embeddings` area of object storage: a miss on this
    machine's copy is looked up in the store before the model computes it; what is computed
    is stored once (names are content addressed: the same name always holds the same bytes)."""
    from interventions.segmentation.cache import EmbeddingCache
    from studies.core import storage

    class StoredEmbeddingCache(EmbeddingCache):
        def get(self, image_sha256, model_id, weights_sha256):
            hit = super().get(image_sha256, model_id, weights_sha256)
            if hit is not None:
                return hit
            name = self.key(image_sha256, model_id, weights_sha256) + ".npz"
            try:
                storage.local_copy("embeddings", name)
            except FileNotFoundError:
                return None
            return super().get(image_sha256, model_id, weights_sha256)

        def put(self, image_sha256, model_id, weights_sha256, embedding):
            path = super().put(image_sha256, model_id, weights_sha256, embedding)
            name = self.key(image_sha256, model_id, weights_sha256) + ".npz"
            if not storage.exists("embeddings", name):
                storage.put_file("embeddings", name, path, keep=True)
            storage.note_local_file("embeddings", path)
            return path

    return StoredEmbeddingCache


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


def weights_file(path: str) -> Path:
    """A ModelSpec weights path: absolute, or relative to the project root (committed weights)."""
    p = Path(path)
    return p if p.is_absolute() else Path(settings.BASE_DIR) / p


def classifier_for(spec):
    """The `interventions.models.Classifier` of a ModelSpec row, loaded once per process."""
    from interventions.models import load_classifier

    if spec.kind != "classifier":
        raise ValueError(f"model {spec.name!r} is a {spec.kind} model, not a classifier")
    key = (spec.pk, spec.weights_sha256 or "")
    with _lock:
        model = _classifiers.get(key)
        if model is None:
            model = load_classifier(
                spec.architecture,
                weights_file(spec.weights_path) if spec.weights_path else None,
                class_names=spec.class_names or None,
                input_size=spec.input_size or None,
                mean=spec.mean or None,
                std=spec.std or None,
                target_layer=spec.target_layer or None,
                expected_sha256=spec.weights_sha256 or None,
            )
            _classifiers[key] = model
        return model


@lru_cache(maxsize=64)
def spec(spec_id: int):
    """A ModelSpec row (rows are immutable once a study uses them)."""
    from studies.models import ModelSpec

    return ModelSpec.objects.get(pk=spec_id)


def image_pixels(image_id: int) -> tuple[np.ndarray, int | None, str]:
    """(uint8 RGB array, class label, sha256) of a dataset image; pixels cached by file + sha256."""
    from studies.core.storage import local_copy
    from studies.models import DatasetImage

    image = DatasetImage.objects.only("image", "class_label", "sha256").get(pk=image_id)
    path = str(local_copy("media", image.image.name))
    return pixels(path, image.sha256), image.class_label, image.sha256


@lru_cache(maxsize=1024)
def pixels(path: str, sha256: str) -> np.ndarray:
    return np.array(load_rgb(path))  # a writable copy (torch.from_numpy warns on read-only arrays)


def clear() -> None:
    """Forget everything this process cached: models, rows, masks, maps (tests, where row ids
    and MEDIA_ROOT are reused from one test to the next)."""
    global _embedding_cache
    with _lock:
        _backends.clear()
        _classifiers.clear()
        _maps.clear()
        _embedding_cache = None
    for cached in (ground_truth, image_files, spec, pixels):
        cached.cache_clear()
