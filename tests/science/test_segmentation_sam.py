"""SAM backend against segment-anything's own SamPredictor on a tiny, seeded random SAM."""

from functools import partial

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from interventions.demo_data import generate_scene
from interventions.segmentation import BackendSpec, Embedding, get_backend
from interventions.segmentation.cache import EmbeddingCache
from interventions.segmentation.sam import SamBackend, file_sha256


def tiny_sam(seed: int = 0) -> Sam:
    """SAM's real modules at the real 1024 input (so low-res logits are 256 x 256), with a
    2-block, 64-wide encoder so a forward pass takes well under a second on a CPU."""
    torch.manual_seed(seed)
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=1024, patch_size=16, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0,
            out_chans=256, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, global_attn_indexes=(1,), window_size=14,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=256, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=64,
        ),
    )  # fmt: skip
    return sam.eval()


@pytest.fixture(scope="module")
def sam():
    torch.set_num_threads(2)
    return tiny_sam()


@pytest.fixture(scope="module")
def image():
    # Non-square (96 x 128), so a swapped (x, y) or (H, W) cannot go unnoticed.
    return np.ascontiguousarray(generate_scene("Cluttered scenes", 3, size=128).image[:96])


@pytest.fixture(scope="module")
def reference(sam, image):
    predictor = SamPredictor(sam)
    with torch.inference_mode():
        predictor.set_image(image, image_format="RGB")
    return predictor


@pytest.fixture(scope="module")
def backend(sam):
    return SamBackend.from_model(sam, model_id="sam-tiny-test", device="cpu")


@pytest.fixture(scope="module")
def embedding(backend, image):
    return backend.embed(image)


POINTS = np.array([[100.0, 20.0], [10.0, 80.0], [64.5, 47.25]])
LABELS = np.array([1, 0, 1])


def _assert_same(ours, ref_masks, ref_iou, ref_low):
    assert ours.masks.dtype == bool
    # A random SAM still gives masks that are neither empty nor full: the comparison bites.
    assert 0.01 < ours.masks.mean() < 0.99
    assert np.array_equal(ours.masks, ref_masks)
    np.testing.assert_allclose(ours.predicted_iou, ref_iou, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.low_res_logits, ref_low, rtol=0, atol=1e-5)


def test_embedding_matches_set_image(embedding, reference, image):
    assert embedding.original_size == image.shape[:2] == reference.original_size
    assert embedding.input_size == reference.input_size == (768, 1024)
    assert np.array_equal(embedding.arrays["features"], reference.features.numpy())


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_equals_sam_predictor(backend, embedding, reference, multimask):
    with torch.inference_mode():
        ref = reference.predict(
            point_coords=POINTS, point_labels=LABELS, multimask_output=multimask
        )
    ours = backend.predict(embedding, POINTS, LABELS, multimask=multimask)
    k = 3 if multimask else 1
    assert ours.masks.shape == (k, 96, 128)
    assert ours.predicted_iou.shape == (k,)
    assert ours.low_res_logits.shape == (k, 256, 256)
    _assert_same(ours, *ref)


def test_points_are_x_then_y(backend, embedding, reference):
    # The equality above holds with (x, y); swapping the columns gives a different answer,
    # so the oracle would catch a backend that swapped them.
    swapped = POINTS[:, ::-1].copy()
    swapped[:, 0] = np.minimum(swapped[:, 0], 127)
    swapped[:, 1] = np.minimum(swapped[:, 1], 95)
    a = backend.predict(embedding, POINTS, LABELS)
    b = backend.predict(embedding, swapped, LABELS)
    assert not np.allclose(a.low_res_logits, b.low_res_logits)


def test_chained_mask_input_equals_sam_predictor(backend, embedding, reference):
    first = backend.predict(embedding, POINTS[:2], LABELS[:2])
    prior = first.low_res_logits[int(np.argmax(first.predicted_iou))][None]
    with torch.inference_mode():
        ref = reference.predict(
            point_coords=POINTS, point_labels=LABELS, mask_input=prior, multimask_output=True
        )
    _assert_same(backend.predict(embedding, POINTS, LABELS, mask_input=prior), *ref)


def test_embedding_survives_the_cache(backend, embedding, tmp_path):
    sha = "ab" * 32
    EmbeddingCache(tmp_path).put(sha, backend.model_id, backend.weights_sha256, embedding)
    fresh = EmbeddingCache(tmp_path, memory_items=0)  # forces a read from disk
    loaded = fresh.get(sha, backend.model_id, backend.weights_sha256)
    assert isinstance(loaded, Embedding) and loaded is not embedding
    assert loaded.original_size == embedding.original_size
    assert loaded.input_size == embedding.input_size
    assert loaded.arrays["features"].dtype == np.float32
    assert np.array_equal(loaded.arrays["features"], embedding.arrays["features"])
    a = backend.predict(embedding, POINTS, LABELS)
    b = backend.predict(loaded, POINTS, LABELS)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.low_res_logits, b.low_res_logits)


def test_bad_input_is_named(backend, embedding):
    with pytest.raises(ValueError, match="outside the image"):
        backend.predict(embedding, np.array([[128.0, 5.0]]), np.array([1]))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        backend.predict(embedding, np.array([1.0, 2.0]), np.array([1]))
    with pytest.raises(ValueError, match="labels"):
        backend.predict(embedding, POINTS, np.array([1, 0]))
    with pytest.raises(ValueError, match="mask_input"):
        backend.predict(embedding, POINTS, LABELS, mask_input=np.zeros((64, 64)))
    with pytest.raises(ValueError, match="uint8"):
        backend.embed(np.zeros((8, 8, 3), np.float32))
    other = Embedding("classical-v1", embedding.original_size, embedding.input_size, {})
    with pytest.raises(ValueError, match="made by model"):
        backend.predict(other, POINTS, LABELS)


def test_get_backend_validates_spec(tmp_path):
    with pytest.raises(ValueError, match="weights_path"):
        get_backend(BackendSpec(kind="sam", architecture="vit_b"))
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="architecture"):
        get_backend(BackendSpec(kind="sam", architecture="vit_x", weights_path=str(ckpt)))
    with pytest.raises(ValueError, match="does not exist"):
        get_backend(
            BackendSpec(kind="sam", architecture="vit_b", weights_path=str(tmp_path / "no.pth"))
        )
    with pytest.raises(ValueError, match="unknown backend kind"):
        get_backend(BackendSpec(kind="unet"))  # type: ignore[arg-type]


def test_file_sha256_is_streamed_hash(tmp_path):
    import hashlib

    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    f = tmp_path / "w.bin"
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_get_backend_loads_a_vit_b_checkpoint(tmp_path):
    """The real loading path: a randomly initialised vit_b saved as a checkpoint file."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
    backend = get_backend(
        BackendSpec(kind="sam", architecture="vit_b", weights_path=str(ckpt), device="cpu")
    )
    sha = file_sha256(ckpt)
    assert backend.weights_sha256 == sha
    assert backend.model_id == f"sam-vit_b-{sha[:12]}"
    assert backend.device == torch.device("cpu")
