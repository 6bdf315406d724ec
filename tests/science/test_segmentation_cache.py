"""Embedding cache: keys, atomic writes shared by several writers, memory LRU, corrupt files."""

import hashlib
import threading

import numpy as np
import pytest

from interventions.demo_data import generate_scene
from interventions.segmentation import Embedding
from interventions.segmentation.cache import EmbeddingCache
from interventions.segmentation.classical import ClassicalBackend


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CountingLoader:
    def __init__(self, image):
        self.image, self.calls = image, 0

    def __call__(self):
        self.calls += 1
        return self.image


def test_get_or_compute_embeds_once_and_shares_the_disk(tmp_path):
    image = generate_scene("Clean shapes", 0).image
    sha = _sha(image.tobytes())
    backend = ClassicalBackend()
    loader = CountingLoader(image)
    a = EmbeddingCache(tmp_path).get_or_compute(sha, backend, loader)
    assert loader.calls == 1
    # Another "process": a new cache object on the same directory reads the file.
    b = EmbeddingCache(tmp_path, memory_items=0).get_or_compute(sha, backend, loader)
    assert loader.calls == 1
    for k in a.arrays:
        assert np.array_equal(a.arrays[k], b.arrays[k])
    assert list(tmp_path.rglob(".tmp-*")) == []
    path = EmbeddingCache(tmp_path).path(sha, backend.model_id, None)
    assert path.exists() and path.parent.name == "classical-v1"


def test_memory_lru_serves_without_disk(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_items=2)
    embs = [Embedding("m", (2, 2), (2, 2), {"x": np.full((2, 2), i)}) for i in range(3)]
    shas = [_sha(bytes([i])) for i in range(3)]
    for sha, emb in zip(shas, embs, strict=True):
        cache.put(sha, "m", None, emb)
    for f in tmp_path.rglob("*.npz"):
        f.unlink()
    assert cache.get(shas[2], "m", None) is embs[2]
    assert cache.get(shas[1], "m", None) is embs[1]
    assert cache.get(shas[0], "m", None) is None  # evicted from memory and gone from disk


def test_key_separates_models_and_weights(tmp_path):
    img = "a" * 64
    keys = {
        EmbeddingCache.key(img, "sam-vit_b-0123", "b" * 64),
        EmbeddingCache.key(img, "sam-vit_b-0123", "c" * 64),
        EmbeddingCache.key(img, "classical-v1", None),
        EmbeddingCache.key("d" * 64, "classical-v1", None),
    }
    assert len(keys) == 4
    assert EmbeddingCache.key(img, "../../etc", None).startswith(".._.._etc/")
    with pytest.raises(ValueError, match="image_sha256"):
        EmbeddingCache.key("xyz", "m", None)
    with pytest.raises(ValueError, match="weights_sha256"):
        EmbeddingCache.key(img, "m", "short")
    with pytest.raises(ValueError, match="model_id"):
        EmbeddingCache.key(img, "", None)


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    sha = "e" * 64
    big = Embedding("m", (4, 4), (4, 4), {"x": np.arange(2_000_000, dtype=np.float32)})
    errors = []

    def writer():
        try:
            for _ in range(5):
                EmbeddingCache(tmp_path, memory_items=0).put(sha, "m", None, big)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def reader(seen):
        for _ in range(50):
            got = EmbeddingCache(tmp_path, memory_items=0).get(sha, "m", None)
            if got is not None:
                seen.append(np.array_equal(got.arrays["x"], big.arrays["x"]))

    seen: list[bool] = []
    threads = [threading.Thread(target=writer) for _ in range(3)]
    threads.append(threading.Thread(target=reader, args=(seen,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(seen)
    assert list(tmp_path.rglob(".tmp-*")) == []
    assert EmbeddingCache(tmp_path, memory_items=0).get(sha, "m", None) is not None


def test_corrupt_or_pickled_files_are_misses(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_items=0)
    sha = "f" * 64
    path = cache.path(sha, "m", None)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    assert cache.get(sha, "m", None) is None
    np.savez(path, meta_model_id=np.array("m"), meta_original_size=np.array([1, 1]),
             meta_input_size=np.array([1, 1]), arr_evil=np.array([{"a": 1}], dtype=object))  # fmt: skip
    assert cache.get(sha, "m", None) is None  # object arrays need pickle: refused
    with pytest.raises(ValueError, match="belongs to model"):
        cache.put(sha, "other", None, Embedding("m", (1, 1), (1, 1), {}))
