"""The analyses registry (interventions.analyses): every method returns exactly the names it
declares, options reach the science functions, bad names are refused, and the pages' overlays
point at registered maps."""

from __future__ import annotations

import numpy as np
import pytest

from interventions.analyses import (
    ANALYSES,
    ANALYSIS_METHODS,
    OVERLAYS,
    STORED_TRUST_SCORES,
    analyse_image,
)
from interventions.demo_data import generate_scene
from interventions.explain import explain
from interventions.models import load_demo_classifier
from interventions.trust import TRUST_SCORE_NAMES
from interventions.voice import voice


@pytest.fixture(scope="module")
def classifier():
    return load_demo_classifier()


@pytest.fixture(scope="module")
def scene():
    return generate_scene("Clean shapes", 2, seed=11)


@pytest.fixture(scope="module")
def results(classifier, scene):
    return analyse_image(classifier, scene.image, "blur", scene.label)


def test_every_method_returns_exactly_its_declared_names(results):
    assert list(results) == list(ANALYSIS_METHODS) == list(ANALYSES)
    for name, analysis in ANALYSES.items():
        got = results[name]
        assert set(got) == {"maps", "stats", "params"}, name
        assert tuple(got["maps"]) == analysis.maps, name
        assert tuple(got["stats"]) == analysis.stats, name
        assert tuple(got["params"]) == analysis.params, name
        for array in got["maps"].values():
            assert isinstance(array, np.ndarray) and np.isfinite(array).all(), name


def test_stored_trust_scores_are_known_and_in_table_order():
    assert STORED_TRUST_SCORES == tuple(n for n in TRUST_SCORE_NAMES if n in STORED_TRUST_SCORES)


def test_results_are_those_of_the_science_functions(classifier, scene, results):
    x = classifier.preprocess(scene.image)
    cam, logits = explain(classifier.module, x, classifier.target_layer, "gradcam")
    assert np.array_equal(results["gradcam"]["maps"]["map"], cam[0].numpy())
    v = voice(classifier.module, x, classifier.target_layer)
    assert np.array_equal(results["voice"]["maps"]["uncertainty"], v.uncertainty[0].numpy())
    pred = int(logits.argmax())
    assert results["gradcam"]["stats"]["prediction"] == pred == v.stats[0]["prediction"]
    assert results["contrast_cam"]["params"]["contrast_idx"] == int(logits[0].topk(2).indices[1])
    causal = results["causal_gradcam"]
    assert causal["maps"]["deletion"].shape == (64 + 1,)  # one 64-pixel row per step
    assert causal["params"]["flip_substrate"] == "blur"
    assert causal["stats"]["target_class"] == scene.label


def test_options_reach_the_science_functions(classifier, scene):
    x = classifier.preprocess(scene.image)
    got = analyse_image(
        classifier,
        scene.image,
        methods=("gradcam", "voice"),
        options={"cam": "gradcam++", "class_idx": 1, "trust_scores": (), "contrast_classes": 3},
    )
    cam, _ = explain(classifier.module, x, classifier.target_layer, "gradcam++", 1)
    assert np.array_equal(got["gradcam"]["maps"]["map"], cam[0].numpy())
    assert got["gradcam"]["params"] == {
        "class_idx": 1,
        "layer": classifier.target_layer,
        "method": "gradcam++",
    }
    assert not any(k.startswith("trust_") for k in got["voice"]["stats"])
    v = voice(classifier.module, x, classifier.target_layer, contrast_classes=3)
    assert np.array_equal(got["voice"]["maps"]["uncertainty"], v.uncertainty[0].numpy())
    assert got["voice"]["params"]["contrast_classes"] == 3


def test_bad_names_are_refused(classifier, scene):
    with pytest.raises(ValueError, match="unknown analyses.*'gradkam'"):
        analyse_image(classifier, scene.image, methods=("gradkam",))
    with pytest.raises(ValueError, match="unknown analysis options.*'steps'"):
        analyse_image(classifier, scene.image, methods=("gradcam",), options={"steps": 3})
    with pytest.raises(ValueError, match="needs a substrate"):
        analyse_image(classifier, scene.image, methods=("causal_gradcam",))


def test_overlays_point_at_registered_maps():
    for name, overlay in OVERLAYS.items():
        assert overlay.array in ANALYSES[overlay.method].maps, name
