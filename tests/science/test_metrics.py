"""IoU and COCO RLE against pycocotools' own implementation."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from interventions.metrics import iou, rle_decode, rle_encode


def _coco(m):
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def _random_masks(seed, n=100):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = rng.integers(1, 48, size=2)
        yield rng.random((h, w)) < rng.random(), rng.random((h, w)) < rng.random()


def test_iou_matches_pycocotools():
    for a, b in _random_masks(0):
        expected = float(mask_utils.iou([_coco(a)], [_coco(b)], [0])[0, 0])
        assert iou(a, b) == pytest.approx(expected, abs=1e-12)


def test_iou_definition_and_edge_cases():
    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    assert iou(a, b) == 0.0  # both empty: no intersection
    a[0, :2] = True
    assert iou(a, b) == 0.0
    b[0, 1:4] = True
    assert iou(a, b) == pytest.approx(1 / 4)
    assert iou(a, a) == 1.0
    assert iou(a.astype(np.uint8) * 255, a) == 1.0  # 0/255 PNG masks work


def test_iou_bad_input():
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        iou(np.zeros((3, 3, 1)), np.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="NaN"):
        iou(np.full((2, 2), np.nan), np.zeros((2, 2)))


def test_rle_round_trip_area_and_json():
    for a, _ in _random_masks(1):
        rle = rle_encode(a)
        assert rle["size"] == list(a.shape)
        assert isinstance(rle["counts"], str)
        back = json.loads(json.dumps(rle))
        assert np.array_equal(rle_decode(back), a)
        ref = _coco(a)
        assert rle["counts"].encode() == ref["counts"]
        assert int(mask_utils.area(ref)) == int(a.sum())


def test_rle_decode_uncompressed_and_bytes():
    m = np.array([[1, 0, 0], [1, 1, 0]], bool)
    # Column-major runs: col0 = 1,1 ; col1 = 0,1 ; col2 = 0,0 -> 0 zeros, 2 ones, 1 zero, 1 one, 2 zeros
    assert np.array_equal(rle_decode({"size": [2, 3], "counts": [0, 2, 1, 1, 2]}), m)
    enc = rle_encode(m)
    assert np.array_equal(rle_decode({"size": enc["size"], "counts": enc["counts"].encode()}), m)


def test_rle_decode_bad_input():
    good = rle_encode(np.eye(4, dtype=bool))
    with pytest.raises(ValueError, match="size"):
        rle_decode({"counts": good["counts"]})
    with pytest.raises(ValueError, match="size"):
        rle_decode({"size": [4], "counts": good["counts"]})
    with pytest.raises(ValueError, match="expected h \\* w"):
        rle_decode({"size": [5, 5], "counts": good["counts"]})
    with pytest.raises(ValueError, match="expected h \\* w"):
        rle_decode({"size": [2, 3], "counts": [1, 2]})
    with pytest.raises(ValueError, match="invalid character"):
        rle_decode({"size": [4, 4], "counts": "\x7f\x7f"})
    with pytest.raises(ValueError, match="counts"):
        rle_decode({"size": [4, 4], "counts": 3.5})
