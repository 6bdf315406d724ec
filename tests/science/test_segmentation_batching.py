"""Batched decoding (several images, several prompt lengths, one forward) against
SamBackend.predict one request at a time, on a tiny seeded random SAM; and the micro-batcher."""

import threading

import numpy as np
import pytest
import torch

from interventions.segmentation.batching import DecodeRequest, MicroBatcher, predict_batch
from interventions.segmentation.sam import SamBackend
from tests.science.test_segmentation_sam import tiny_sam


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(2)
    return SamBackend.from_model(tiny_sam(), model_id="sam-tiny-test", device="cpu")


@pytest.fixture(scope="module")
def embeddings(backend):
    rng = np.random.default_rng(11)
    sizes = [(96, 128), (200, 150), (333, 517)]
    return [backend.embed(rng.integers(0, 256, (*s, 3), dtype=np.uint8)) for s in sizes]


@pytest.fixture(scope="module")
def requests_(embeddings):
    """Three images, 0 to 9 points, two with a previous mask as mask_input."""
    rng = np.random.default_rng(5)
    out = []
    for i, n in enumerate([1, 3, 9, 0, 2, 5, 1, 4]):
        emb = embeddings[i % len(embeddings)]
        h, w = emb.original_size
        pts = np.stack([rng.uniform(0, w - 0.01, n), rng.uniform(0, h - 0.01, n)], axis=1)
        prior = rng.normal(size=(1, 256, 256)).astype(np.float32) if i in (2, 5) else None
        out.append(DecodeRequest(emb, pts, rng.integers(0, 2, n), prior))
    return out


def one_at_a_time(backend, requests, multimask=True):
    return [
        backend.predict(r.embedding, r.points_xy, r.labels, r.mask_input, multimask=multimask)
        for r in requests
    ]


def assert_same(batched, single):
    assert batched.masks.shape == single.masks.shape and batched.masks.dtype == bool
    # A batch reorders float32 sums (other GEMM blocking for other shapes; which one depends on
    # the CPU's instruction set), so logits move by ~1e-7 and a pixel whose logit lies that close
    # to SAM's threshold may flip: a handful at most. The logits themselves are checked below.
    flipped = int((batched.masks != single.masks).sum())
    assert flipped <= max(2, int(1e-4 * single.masks.size)), f"{flipped} pixels differ"
    np.testing.assert_allclose(batched.predicted_iou, single.predicted_iou, rtol=0, atol=1e-4)
    np.testing.assert_allclose(batched.low_res_logits, single.low_res_logits, rtol=0, atol=1e-4)


@pytest.mark.parametrize("multimask", [True, False])
def test_batch_equals_one_at_a_time(backend, requests_, multimask):
    batched = predict_batch(backend, requests_, multimask=multimask)
    single = one_at_a_time(backend, requests_, multimask)
    assert len(batched) == len(requests_)
    for b, s in zip(batched, single, strict=True):
        assert_same(b, s)
    assert 0.01 < np.mean([s.masks.mean() for s in single]) < 0.99


def test_padding_without_the_key_mask_would_change_answers(backend, requests_):
    """The oracle bites: SAM's own way of padding (more label -1 points, all attended to)
    moves the logits of a short prompt batched beside a long one."""
    short = requests_[0]  # one point
    padded = DecodeRequest(
        short.embedding,
        np.concatenate([short.points_xy, np.zeros((8, 2))]),
        short.labels,
    )
    alone = backend.predict(short.embedding, short.points_xy, short.labels)
    # emulate unmasked padding: eight extra -1 tokens through SamPredictor itself
    p = backend.predictor
    with backend._lock, torch.inference_mode():
        p.features = torch.from_numpy(short.embedding.arrays["features"])
        p.original_size, p.input_size = short.embedding.original_size, short.embedding.input_size
        p.is_image_set = True
        labels = np.concatenate([short.labels, -np.ones(8, np.int64)])
        _, _, low = p.predict(padded.points_xy.astype(np.float32), labels, multimask_output=True)
        p.reset_image()
    assert np.abs(low - alone.low_res_logits).max() > 1e-3
    batched = predict_batch(backend, [short, requests_[2]])[0]
    assert_same(batched, alone)


def test_invalid_request_fails_before_running(backend, requests_):
    bad = DecodeRequest(requests_[0].embedding, np.array([[1e4, 1.0]]), np.array([1]))
    with pytest.raises(ValueError, match="outside the image"):
        predict_batch(backend, [requests_[1], bad])
    assert predict_batch(backend, []) == []


def test_micro_batcher_collects_concurrent_requests(backend, requests_):
    single = one_at_a_time(backend, requests_)
    results: dict[int, object] = {}
    start = threading.Barrier(len(requests_))

    def client(i):
        start.wait()
        results[i] = batcher.predict(requests_[i], timeout=60)

    with MicroBatcher(backend, max_batch=8, max_wait_ms=200) as batcher:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests_))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        with pytest.raises(ValueError, match="labels"):
            batcher.submit(DecodeRequest(requests_[0].embedding, np.zeros((1, 2)), np.array([7])))
    assert sum(batcher.batch_sizes) == len(requests_)
    assert max(batcher.batch_sizes) > 1  # requests within max_wait_ms went as one batch
    for i, s in enumerate(single):
        assert_same(results[i], s)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(requests_[0])
