"""interventions.substrates and interventions.regions against plain, obviously-correct loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interventions.causal import rise_blur
from interventions.demo_data import generate_scene
from interventions.models import Classifier, build_demo_cnn
from interventions.regions import (
    area_fraction,
    resize_map,
    top_region,
    top_region_iou,
    uncertainty_overlap,
)
from interventions.substrates import (
    intervene,
    normalise_image,
    saliency_order_regions,
    smallest_flip_by_saliency,
    substrate,
    to_input_size,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def scene():
    return generate_scene("Clean shapes", 0)


def test_normalise_then_resize_is_the_classifier_preprocess(scene):
    clf = Classifier(
        build_demo_cnn().eval(), "demo", tuple("abcdef"), (64, 64), MEAN, STD, "features.conv4"
    )
    ours = to_input_size(normalise_image(scene.image, MEAN, STD), (64, 64))
    assert torch.allclose(ours, clf.preprocess(scene.image), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        normalise_image(scene.image.astype(np.float32), MEAN, STD)


def test_delete_and_insert_per_pixel(scene):
    x = normalise_image(scene.image, MEAN, STD)
    region = scene.mask
    for name in ("zero", "blur", "mean", "noise"):
        sub = substrate(x, name)
        deleted = intervene(x, region, "delete", name)
        inserted = intervene(x, region, "insert", name)
        h, w = region.shape
        for y, xx in [
            (0, 0),
            (h // 2, w // 2),
            (h - 1, w - 1),
            *zip(*np.nonzero(region)[:2], strict=True),
        ][:40]:
            inside = bool(region[y, xx])
            assert torch.equal(deleted[0, :, y, xx], sub[0, :, y, xx] if inside else x[0, :, y, xx])
            assert torch.equal(
                inserted[0, :, y, xx], x[0, :, y, xx] if inside else sub[0, :, y, xx]
            )
    assert torch.count_nonzero(substrate(x, "zero")) == 0
    assert torch.equal(substrate(x, "blur"), rise_blur(x))
    means = substrate(x, "mean")[0, :, 5, 7]
    assert torch.allclose(means, torch.stack([x[0, c].mean() for c in range(3)]))
    assert torch.equal(substrate(x, "noise", seed=3), substrate(x, "noise", seed=3))
    assert not torch.equal(substrate(x, "noise", seed=3), substrate(x, "noise", seed=4))


def test_bad_interventions_name_the_problem(scene):
    x = normalise_image(scene.image, MEAN, STD)
    with pytest.raises(ValueError, match="substrate 'plasma'"):
        intervene(x, scene.mask, "delete", "plasma")
    with pytest.raises(ValueError, match="operation 'erase'"):
        intervene(x, scene.mask, "erase", "zero")
    with pytest.raises(ValueError, match="region size"):
        intervene(x, scene.mask[:10], "delete", "zero")


def test_saliency_order_regions_take_the_most_salient_pixels_stably():
    sal = np.array([[0.1, 0.9, 0.5], [0.9, 0.0, 0.5]])
    regions = saliency_order_regions(sal, np.array([0, 1 / 6, 2 / 6, 3 / 6, 1.0]))
    assert regions.sum(axis=(1, 2)).tolist() == [0, 1, 2, 3, 6]
    assert regions[1].tolist() == [
        [False, True, False],
        [False, False, False],
    ]  # first 0.9 (stable)
    assert regions[3].tolist() == [[False, True, True], [True, False, False]]


def test_region_statistics_against_loops():
    rng = np.random.default_rng(0)
    sal = rng.random((20, 30))
    unc = rng.random((20, 30))
    region = np.zeros((20, 30), bool)
    region[3:9, 4:15] = True
    n = int(region.sum())
    # oracle: sort pixels by saliency descending with a plain loop
    pixels = sorted(
        ((sal[y, x], -(y * 30 + x), y, x) for y in range(20) for x in range(30)), reverse=True
    )
    top = np.zeros_like(region)
    for _, _, y, x in pixels[:n]:
        top[y, x] = True
    assert np.array_equal(top_region(sal, n), top)
    inter = sum(region[y, x] and top[y, x] for y in range(20) for x in range(30))
    union = sum(region[y, x] or top[y, x] for y in range(20) for x in range(30))
    assert top_region_iou(region, sal) == pytest.approx(inter / union)
    assert top_region_iou(top, sal) == 1.0
    inside = sum(1 for y in range(20) for x in range(30) if region[y, x] and unc[y, x] > 0.1)
    assert uncertainty_overlap(region, unc) == pytest.approx(inside / n)
    assert area_fraction(region) == pytest.approx(n / 600)
    assert top_region_iou(np.zeros_like(region), sal) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        top_region_iou(region, np.full((20, 30), np.nan))
    with pytest.raises(ValueError, match="resize it first"):
        uncertainty_overlap(region, unc[:10])
    assert resize_map(sal, (40, 60)).shape == (40, 60)


def test_smallest_flip_by_saliency_matches_a_loop(scene):
    torch.manual_seed(0)
    model = build_demo_cnn().eval()
    x = normalise_image(scene.image, MEAN, STD)
    sal = np.random.default_rng(1).random(scene.mask.shape)

    def predict(t):
        return torch.softmax(model(t), 1)

    result = smallest_flip_by_saliency(predict, x, sal, (64, 64), "delete", "zero", steps=10)
    base = int(predict(to_input_size(x, (64, 64))).argmax())
    expected = None
    for k in range(11):
        region = saliency_order_regions(sal, np.array([k / 10]))[0]
        with torch.no_grad():
            pred = int(
                predict(to_input_size(intervene(x, region, "delete", "zero"), (64, 64))).argmax()
            )
        assert pred == result["prediction"][k]
        if expected is None and pred != base:
            expected = k / 10
    assert result["fraction"] == expected and len(result["probs"]) == 11
