"""Demo scene generator: determinism, shapes, exact masks, class coverage, data set contrast."""

import numpy as np
import pytest

from interventions.demo_data import (
    CLASS_NAMES,
    DATASETS,
    Scene,
    draw_shape_mask,
    generate_dataset,
    generate_scene,
)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_scene_is_deterministic_and_independent_of_n(name):
    short = generate_dataset(name, n=3, seed=7)
    long = generate_dataset(name, n=8, seed=7)
    again = generate_scene(name, 2, seed=7)
    for a, b in zip(short, long[:3], strict=True):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.mask, b.mask)
        assert a.label == b.label
    assert np.array_equal(again.image, long[2].image)
    other_seed = generate_scene(name, 2, seed=8)
    assert not np.array_equal(other_seed.image, again.image)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("size", [64, 128])
def test_types_shapes_and_mask_extent(name, size):
    for scene in generate_dataset(name, n=12, size=size):
        assert isinstance(scene, Scene)
        assert scene.image.dtype == np.uint8 and scene.image.shape == (size, size, 3)
        assert scene.mask.dtype == bool and scene.mask.shape == (size, size)
        frac = scene.mask.mean()
        assert 0.005 < frac < 0.5
        assert scene.class_name == CLASS_NAMES[scene.label]
        ys, xs = np.nonzero(scene.mask)
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        assert 0.15 * size <= extent <= 0.5 * size


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_labels_cover_all_classes(name):
    labels = [s.label for s in generate_dataset(name, n=60)]
    assert sorted(set(labels)) == list(range(len(CLASS_NAMES)))
    # Balanced: each block of six holds every class once.
    assert np.bincount(labels).tolist() == [10] * len(CLASS_NAMES)


def test_clean_mask_is_exactly_the_coloured_object():
    # Clean scenes: flat background + one flat object + light noise, so the mean colour inside
    # the mask differs from outside and the object's pixels are all near one colour.
    for scene in generate_dataset("Clean shapes", n=12):
        img = scene.image.astype(float)
        inside = img[scene.mask].mean(axis=0)
        outside = img[~scene.mask].mean(axis=0)
        assert np.linalg.norm(inside - outside) > 100
        nearer_inside = np.linalg.norm(img - inside, axis=2) < np.linalg.norm(img - outside, axis=2)
        assert np.array_equal(nearer_inside, scene.mask)


def test_datasets_differ_in_difficulty():
    def contrast(scene):
        img = scene.image.astype(float)
        return np.linalg.norm(img[scene.mask].mean(0) - img[~scene.mask].mean(0))

    def noise(scene):
        return float(np.median(np.abs(np.diff(scene.image.astype(float), axis=1))))

    clean = generate_dataset("Clean shapes", n=12)
    low = generate_dataset("Low contrast", n=12)
    clutter = generate_dataset("Cluttered scenes", n=12)
    assert np.mean([contrast(s) for s in clean]) > 4 * np.mean([contrast(s) for s in low])
    assert np.mean([noise(s) for s in low]) > 3 * np.mean([noise(s) for s in clean])
    # Clutter: many distinct colour regions, so the background outside the target is far
    # from a single colour.
    bg_std = [s.image[~s.mask].astype(float).std(0).mean() for s in clutter]
    clean_bg_std = [s.image[~s.mask].astype(float).std(0).mean() for s in clean]
    assert np.mean(bg_std) > 4 * np.mean(clean_bg_std)
    assert not np.array_equal(clean[0].image, clutter[0].image)


def test_ring_has_a_hole_and_shapes_are_filled():
    ring = draw_shape_mask("ring", 64, (32, 32), 40, 0.0)
    assert not ring[32, 32] and ring[32, 32 + 15]
    for name in CLASS_NAMES:
        m = draw_shape_mask(name, 64, (32.0, 32.0), 40.0, 0.3)
        assert 100 < m.sum() < 64 * 64 / 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown demo dataset"):
        generate_scene("Nope", 0)
    with pytest.raises(ValueError, match="index"):
        generate_scene("Clean shapes", -1)
    with pytest.raises(ValueError, match="size"):
        generate_scene("Clean shapes", 0, size=8)
    with pytest.raises(ValueError, match="unknown shape"):
        draw_shape_mask("hexagon", 64, (32, 32), 20, 0.0)
