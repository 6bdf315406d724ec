"""precompute_image_analyses: every ImageAnalysis with its stats, progress, safe to run twice; and
the demo classifier flips more often when the object itself is deleted than the background."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from interventions.causal import causal_auc
from interventions.demo_data import generate_scene
from interventions.voice import voice
from studies.intervention.precompute import analyses_complete, start_image_analyses
from studies.models import ImageAnalysis, Job
from tests.intervention_fixtures import (
    DEMO_WEIGHTS,
    classifier_spec,
    intervention_study,
    random_demo_weights,
)
from workers.intervention_tasks import ANALYSIS_METHODS, classifier_for


def npz(row: ImageAnalysis) -> dict:
    with row.maps.open("rb") as f:
        data = np.load(io.BytesIO(f.read()))
        return {k: data[k] for k in data.files}


@pytest.mark.django_db
def test_precompute_stores_maps_and_stats_and_is_safe_to_rerun(
    tmp_path, django_capture_on_commit_callbacks
):
    spec = classifier_spec(random_demo_weights(tmp_path))
    study = intervention_study(spec, n_images=2)
    with django_capture_on_commit_callbacks(execute=True):
        job = start_image_analyses(study)
    job.refresh_from_db()
    assert (job.status, job.progress, job.total, job.done) == ("done", 1.0, 2, 2), job.error
    assert analyses_complete(study)
    clf = classifier_for(spec)
    for image in study.dataset.images.all():
        rows = {a.method: a for a in ImageAnalysis.objects.filter(image=image, model=spec)}
        assert set(rows) == set(ANALYSIS_METHODS)
        for row in rows.values():
            assert row.code_version and row.maps.name.endswith(".npz")
        v = rows["voice"].stats
        assert {
            "iou",
            "snr",
            "logit_pred",
            "log_prob_pred",
            "prediction",
            "contrast_class",
            "trust_grad_trust",
        } <= set(v)
        # VOICE: the stored map and stats are those of a direct call
        from workers.intervention_tasks import _image

        rgb, _, _ = _image(image.pk)
        direct = voice(clf.module, clf.preprocess(rgb), clf.target_layer)
        assert np.allclose(
            npz(rows["voice"])["uncertainty"], direct.uncertainty[0].numpy(), atol=1e-5
        )
        assert v["iou"] == pytest.approx(direct.stats[0]["iou"]) and v["snr"] == pytest.approx(
            direct.stats[0]["snr"], rel=1e-4
        )
        # causal curves: AUC of the stored scores, 64 steps + 1 on the 64 x 64 input
        c = rows["causal_gradcam"]
        maps = npz(c)
        assert maps["deletion"].shape == (65,) and maps["insertion"].shape == (65,)
        assert c.stats["deletion_auc"] == pytest.approx(float(causal_auc(maps["deletion"])))
        assert c.stats["insertion_auc"] == pytest.approx(float(causal_auc(maps["insertion"])))
        assert maps["deletion"][0] == pytest.approx(c.stats["prob_pred"], abs=1e-4)
        assert (
            rows["contrast_cam"].params["contrast_idx"] != rows["contrast_cam"].params["prediction"]
        )
        gradcam = npz(rows["gradcam"])["map"]
        assert gradcam.shape == (64, 64) and 0.0 <= gradcam.min() and gradcam.max() <= 1.0
    n_files = len(list((tmp_path / "media" / "analyses").iterdir()))
    assert n_files == 2 * len(ANALYSIS_METHODS)

    with django_capture_on_commit_callbacks(execute=True):
        start_image_analyses(study)
    assert ImageAnalysis.objects.filter(model=spec).count() == 2 * len(ANALYSIS_METHODS)
    assert (
        len(list((tmp_path / "media" / "analyses").iterdir())) == n_files
    )  # replaced, not piled up
    for row in ImageAnalysis.objects.filter(model=spec):
        assert row.maps.storage.exists(row.maps.name)
    assert Job.objects.filter(study=study, status="done").count() == 2


def test_deleting_the_object_flips_the_demo_classifier_more_than_equal_background():
    """Held-out "Clean shapes" scenes (the demo classifier's domain and the demo intervention
    study's data set; seed 1000, not the training seed): delete the object's own mask vs an
    equal-area background region (the background pixels farthest from the object), zero
    substrate (the demo study's), through the same code path the trials use."""
    if not DEMO_WEIGHTS.is_file():
        pytest.skip(f"the committed demo classifier weights are missing: {DEMO_WEIGHTS}")
    import cv2

    from interventions.models import load_demo_classifier
    from interventions.substrates import intervene, normalise_image, to_input_size

    clf = load_demo_classifier()
    flips = {"object": 0, "background": 0}
    n = 30
    for i in range(n):
        scene = generate_scene("Clean shapes", i, seed=1000)
        x = normalise_image(scene.image, clf.mean, clf.std)
        obj = scene.mask.astype(bool)
        distance = cv2.distanceTransform((~obj).astype(np.uint8), cv2.DIST_L2, 5).ravel()
        order = np.argsort(-distance, kind="stable")
        background = np.zeros(obj.size, bool)
        background[order[: int(obj.sum())]] = True
        background = background.reshape(obj.shape)
        assert background.sum() == obj.sum() and not (background & obj).any()
        batch = torch.cat(
            [x, intervene(x, obj, "delete", "zero"), intervene(x, background, "delete", "zero")]
        )
        preds = clf.predict_proba(to_input_size(batch, clf.input_size)).argmax(1).tolist()
        flips["object"] += preds[1] != preds[0]
        flips["background"] += preds[2] != preds[0]
    print(
        f"flip rate over {n} held-out scenes: object {flips['object'] / n:.2f}, "
        f"background {flips['background'] / n:.2f}"
    )
    assert flips["object"] > flips["background"]
    assert flips["object"] / n >= 0.5
