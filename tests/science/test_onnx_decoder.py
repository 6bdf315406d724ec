"""The exported ONNX decoder (what the browser runs) against segment-anything's own SamPredictor
on a tiny, seeded random SAM; the float16 embedding the browser receives; the export cache."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from interventions.segmentation.browser import (
    embedding_from_f16_bytes,
    embedding_to_f16_bytes,
    mask_sha256,
    onnx_decoder_feeds,
    pack_decoder,
    unpack_decoder,
)
from interventions.segmentation.onnx_export import (
    DECODER_FORMAT,
    DecoderSessions,
    cached_decoder_onnx,
    export_decoder_onnx,
    state_dict_sha256,
)
from interventions.segmentation.sam import SamBackend
from tests.science.test_segmentation_sam import tiny_sam

# Non-square sizes of both orientations, one with odd sides whose 1024-frame size rounds.
SIZES = [(96, 128), (333, 517), (200, 150)]
# Float32 arithmetic differs between torch and onnxruntime (bilinear resize, matmul order) by
# ~1e-5 at most here; a pixel whose server logit lies that close to SAM's threshold (0) may
# fall either way. Every other pixel must agree exactly.
THRESHOLD_BAND = 1e-4


@pytest.fixture(scope="module")
def sam():
    torch.set_num_threads(2)
    return tiny_sam()


@pytest.fixture(scope="module")
def onnx_path(sam, tmp_path_factory):
    return export_decoder_onnx(sam, tmp_path_factory.mktemp("onnx") / "decoder.samdec")


@pytest.fixture(scope="module")
def session(onnx_path):
    return DecoderSessions(onnx_path)


@pytest.fixture(scope="module")
def backend(sam):
    return SamBackend.from_model(sam, model_id="sam-tiny-test", device="cpu")


@pytest.fixture(scope="module")
def scenes(sam, backend):
    """Per size: (embedding, SamPredictor with that image set)."""
    rng = np.random.default_rng(7)
    out = []
    for h, w in SIZES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        predictor = SamPredictor(sam)
        with torch.inference_mode():
            predictor.set_image(image, image_format="RGB")
        out.append((backend.embed(image), predictor))
    return out


def random_prompts(rng, h, w, count, most=8):
    for _ in range(count):
        n = int(rng.integers(1, most + 1))
        # float32 clicks with fractions, as a canvas scaled to the screen gives them
        pts = np.stack([rng.uniform(0, w - 0.01, n), rng.uniform(0, h - 0.01, n)], axis=1)
        yield pts.astype(np.float32), rng.integers(0, 2, n)


def reference(predictor, pts, labels, mask_input=None):
    """SamPredictor.predict as SamBackend.predict calls it (float32 points, multimask), with
    logits so the threshold band can be told apart."""
    with torch.inference_mode():
        logits, iou, low = predictor.predict(
            point_coords=pts.astype(np.float32),
            point_labels=labels.astype(np.int64),
            mask_input=mask_input,
            multimask_output=True,
            return_logits=True,
        )
    return logits, iou, low


def assert_mask_matches(mask, ref_logits):
    near = np.abs(ref_logits) < THRESHOLD_BAND
    differs = mask != (ref_logits > 0)
    assert not np.any(differs & ~near), f"{int((differs & ~near).sum())} pixels differ"
    return int(differs.sum())


@pytest.mark.parametrize("few", [True, False], ids=["few-token graph", "usual graph"])
@pytest.mark.parametrize("mask_choice", ["first", "best_predicted"])
def test_onnx_decoder_equals_sam_predictor(session, scenes, mask_choice, few):
    """Both click graphs, each at point counts on both sides of the one the browser switches
    at (session.few_max_points), give SamPredictor's answer."""
    assert session.few_max_points == 10  # SAM's decoder: 16-wide heads, 4 mask tokens
    rng = np.random.default_rng(0 if mask_choice == "first" else 1)
    flipped = pixels = 0
    indices = set()
    for embedding, predictor in scenes:
        h, w = embedding.original_size
        for pts, labels in random_prompts(rng, h, w, 6, most=14):
            logits, iou, low = reference(predictor, pts, labels)
            index = int(np.argmax(iou)) if mask_choice == "best_predicted" else 0
            feeds = onnx_decoder_feeds(embedding, pts, labels, mask_choice=mask_choice)
            masks, iou_onnx, low_onnx, index_onnx = session.run(feeds, few=few)
            assert masks.shape == (1, 1, h, w) and low_onnx.shape == (1, 1, 256, 256)
            assert int(index_onnx[0]) == index
            indices.add(index)
            np.testing.assert_allclose(iou_onnx[0], iou, rtol=0, atol=1e-4)
            np.testing.assert_allclose(low_onnx[0, 0], low[index], rtol=0, atol=1e-4)
            ref_mask = logits[index] > 0
            assert 0.01 < ref_mask.mean() < 0.99  # neither empty nor full: the check bites
            flipped += assert_mask_matches(masks[0, 0] > 0, logits[index])
            pixels += h * w
    # a handful of threshold-band pixels at most, out of about 1.3 million
    assert flipped <= pixels * 1e-4
    if mask_choice == "best_predicted":
        assert indices != {0}, "argmax never left mask 0: the choice went untested"


@pytest.mark.parametrize("few", [True, False], ids=["few-token graph", "usual graph"])
def test_upscaling_only_the_image_gives_the_same_mask(session, scenes, few):
    """full_low_res 0 upscales only the image's part of the padded frame (plus a margin the
    resizes read): the same mask, IoU and choice as the full upscaling, and its low-res logits
    are the full ones' top-left part."""
    rng = np.random.default_rng(5)
    for embedding, _ in scenes:
        h, w = embedding.original_size
        hi, wi = embedding.input_size
        for pts, labels in random_prompts(rng, h, w, 3, most=12):
            full = session.run(onnx_decoder_feeds(embedding, pts, labels), few=few)
            part = session.run(
                onnx_decoder_feeds(embedding, pts, labels, full_low_res=False), few=few
            )
            rows, cols = part[2].shape[-2:]
            assert (rows, cols) == (4 * min(64, hi // 16 + 2), 4 * min(64, wi // 16 + 2))
            assert rows * cols < 256 * 256  # these sizes are not square: the crop bites
            np.testing.assert_array_equal(part[3], full[3])
            np.testing.assert_allclose(part[1], full[1], rtol=0, atol=0)
            np.testing.assert_allclose(part[2][0, 0], full[2][0, 0, :rows, :cols], atol=1e-5)
            np.testing.assert_allclose(part[0], full[0], rtol=0, atol=1e-5)
            assert np.array_equal(part[0] > 0, full[0] > 0) or (
                np.abs(full[0][(part[0] > 0) != (full[0] > 0)]).max() < THRESHOLD_BAND
            )


def test_chained_mask_input_and_one_point(session, scenes):
    embedding, predictor = scenes[1]
    pts, labels = np.array([[40.5, 300.25]], np.float32), np.array([1])
    _, iou, low = reference(predictor, pts, labels)
    prior = low[int(np.argmax(iou))][None]
    more = np.array([[40.5, 300.25], [500.0, 10.0]], np.float32), np.array([1, 0])
    logits, iou2, _ = reference(predictor, *more, mask_input=prior)
    feeds = onnx_decoder_feeds(embedding, *more, mask_input=prior)
    masks, iou_onnx, _, index = session.run(feeds)
    assert int(index[0]) == 0
    np.testing.assert_allclose(iou_onnx[0], iou2, rtol=0, atol=1e-4)
    assert_mask_matches(masks[0, 0] > 0, logits[0])
    without = session.run(onnx_decoder_feeds(embedding, *more))[1]
    assert not np.allclose(without, iou_onnx, atol=1e-4)  # the prior does reach the graph


def test_points_are_x_then_y_in_the_graph(session, scenes):
    embedding, _ = scenes[0]
    pts, labels = np.array([[100.0, 20.0], [10.0, 80.0]], np.float32), np.array([1, 0])
    a = session.run(onnx_decoder_feeds(embedding, pts, labels))[2]
    b = session.run(onnx_decoder_feeds(embedding, pts[:, ::-1] * 0.9, labels))[2]
    assert not np.allclose(a, b)


def test_decoder_container_is_checked(onnx_path):
    data = onnx_path.read_bytes()
    prepare, click, click_few, few_max_points = unpack_decoder(data)
    assert prepare[:2] == click[:2] == click_few[:2] == data[24:26]  # each an ONNX protobuf
    assert pack_decoder(prepare, click, click_few, few_max_points) == data
    with pytest.raises(ValueError, match="shorter than its header"):
        unpack_decoder(data[:10])
    with pytest.raises(ValueError, match="magic"):
        unpack_decoder(b"SAMDEC01" + data[8:])
    with pytest.raises(ValueError, match="its header says"):
        unpack_decoder(data[:-1])


def test_float16_embedding_round_trip(scenes):
    embedding, _ = scenes[1]
    raw = embedding_to_f16_bytes(embedding)
    features = embedding.arrays["features"]
    assert raw[:8] == b"SAMEMB16" and len(raw) == 48 + 2 * features.size
    back = embedding_from_f16_bytes(raw, embedding.model_id)
    assert back.original_size == (333, 517) and back.input_size == embedding.input_size
    assert back.arrays["features"].dtype == np.float32
    assert np.array_equal(back.arrays["features"], features.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="expected"):
        embedding_from_f16_bytes(raw[:-2], "m")
    with pytest.raises(ValueError, match="magic"):
        embedding_from_f16_bytes(b"X" * 8 + raw[8:], "m")
    big = embedding_from_f16_bytes(raw, embedding.model_id)
    big.arrays["features"][0, 0, 0, 0] = 1e6
    with pytest.raises(ValueError, match="float16"):
        embedding_to_f16_bytes(big)


def test_float16_embedding_gives_the_server_mask(session, scenes):
    """What the browser shows (decoder on the float16 embedding) vs the server's float32 mask."""
    rng = np.random.default_rng(3)
    ious = []
    for embedding, predictor in scenes:
        half = embedding_from_f16_bytes(embedding_to_f16_bytes(embedding), embedding.model_id)
        h, w = embedding.original_size
        for pts, labels in random_prompts(rng, h, w, 8):
            logits, _, _ = reference(predictor, pts, labels)
            shown = session.run(onnx_decoder_feeds(half, pts, labels))[0][0, 0] > 0
            server = logits[0] > 0
            ious.append(np.logical_and(shown, server).sum() / np.logical_or(shown, server).sum())
    assert min(ious) >= 0.999, f"min IoU {min(ious):.6f}"


def test_export_cache_is_keyed_and_atomic(sam, tmp_path, monkeypatch):
    sha = state_dict_sha256(sam)
    assert sha == state_dict_sha256(tiny_sam()) and sha != state_dict_sha256(tiny_sam(seed=1))
    path = cached_decoder_onnx(sam, tmp_path, "vit_tiny", sha)
    assert path.name == f"vit_tiny-{sha}-{DECODER_FORMAT}.samdec" and path.stat().st_size > 0
    assert path.stat().st_mode & 0o044 == 0o044  # readable by the process that serves it

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("interventions.segmentation.onnx_export.export_decoder_onnx", no_export)
    assert cached_decoder_onnx(sam, tmp_path, "vit_tiny", sha) == path
    with pytest.raises(AssertionError, match="exported again"):
        cached_decoder_onnx(sam, tmp_path, "vit_tiny", "0" * 64)  # other weights: a new file
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    with pytest.raises(ValueError, match="hex"):
        cached_decoder_onnx(sam, tmp_path, "vit_tiny", "not-a-sha")
    with pytest.raises(ValueError, match="model_type"):
        cached_decoder_onnx(sam, tmp_path, "../x", sha)


def test_mask_sha256_is_of_row_major_bytes():
    import hashlib

    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    expected = hashlib.sha256(bytes([0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])).hexdigest()
    assert mask_sha256(mask) == expected
    assert mask_sha256(mask.astype(np.uint8) * 255) == expected
    assert mask_sha256(mask.T) != expected
