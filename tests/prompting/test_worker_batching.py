"""The interactive worker's micro-batching (workers/batching.py): on for a threads pool with
concurrency > 1 only, and concurrent predict_mask tasks batched give the answers they give one
at a time (tiny seeded random SAM in the worker's model cache)."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from interventions.metrics import rle_decode
from tests.prompting.test_browser_decoder_api import sam_study
from workers import batching

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def batching_off():
    batching.disable()
    yield
    batching.disable()


@pytest.mark.parametrize(
    "pool, concurrency, env, on",
    [
        ("threads", 4, None, True),
        ("prefork", 4, None, False),
        ("solo", 1, None, False),
        ("threads", 1, None, False),
        ("threads", 4, "0", False),
    ],
)
def test_batching_follows_the_worker_pool(monkeypatch, pool, concurrency, env, on):
    if env is None:
        monkeypatch.delenv("INTERVENE_MICROBATCH", raising=False)
    else:
        monkeypatch.setenv("INTERVENE_MICROBATCH", env)
    batching._on_worker_init(sender=SimpleNamespace(pool_cls=pool, concurrency=concurrency))
    assert batching.enabled() is on


def test_concurrent_clicks_are_batched_with_the_same_answers(django_capture_on_commit_callbacks):
    from workers.model_cache import backend_for
    from workers.tasks import predict_mask

    study, _ = sam_study(django_capture_on_commit_callbacks)
    images = list(study.dataset.images.order_by("index"))
    prompts = [
        (images[i % len(images)].pk, [[10.0 + 7 * i, 20.0]], [[60.0, 40.0 + 3 * i]])
        for i in range(6)
    ]
    choice = ["first", "best_predicted"]
    # one at a time (the prefork path); also warms every per-process cache, so the threads
    # below touch no database
    alone = [
        predict_mask.run(study.model.pk, img, g, r, choice[i % 2])
        for i, (img, g, r) in enumerate(prompts)
    ]
    batching.enable(max_batch=8, max_wait_ms=300)
    batched: list = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def click(i):
        img, g, r = prompts[i]
        barrier.wait()
        batched[i] = predict_mask.run(study.model.pk, img, g, r, choice[i % 2])

    threads = [threading.Thread(target=click, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sizes = batching.batcher_for(backend_for(study.model)).batch_sizes
    assert sum(sizes) == len(prompts) and max(sizes) > 1, sizes
    for one, many in zip(alone, batched, strict=True):
        assert many["mask_index"] == one["mask_index"]
        assert many["predicted_iou"] == pytest.approx(one["predicted_iou"], abs=1e-4)
        a, b = rle_decode(one["mask_rle"]), rle_decode(many["mask_rle"])
        assert np.mean(a != b) < 1e-3  # float noise at pixels whose logit is ~0
