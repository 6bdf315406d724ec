"""The tidy export of an intervention study: trials, regions as COCO RLE, maps as .npy, VOICE and
curve stats as CSV, every file in the manifest with its sha256."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from interventions.metrics import rle_decode, rle_encode
from interventions.trust_names import TRUST_SCORE_NAMES
from studies.core.exports import run_export
from studies.intervention.precompute import start_image_analyses
from studies.models import ImageAnalysis
from tests.factories import ParticipantClient
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db


def test_tidy_export_holds_trials_regions_maps_and_stats(
    client, tmp_path, django_capture_on_commit_callbacks
):
    study = intervention_study(classifier_spec(random_demo_weights(tmp_path)), n_images=1)
    with django_capture_on_commit_callbacks(execute=True):
        start_image_analyses(study)
    pc = ParticipantClient(client, study.participants.first())
    pc.consent()
    a = pc.participant.assignments.select_related("image").first()
    regions = []
    for seq, (op, box) in enumerate([("delete", (5, 5, 40, 40)), ("insert", (20, 30, 90, 100))]):
        m = np.zeros((a.image.height, a.image.width), bool)
        m[box[1] : box[3], box[0] : box[2]] = True
        regions.append(m)
        r = pc.post(
            f"assignments/{a.pk}/trials",
            {
                "client_event_id": f"c{seq}",
                "seq": seq,
                "operation": op,
                "region_rle": rle_encode(m),
            },
        )
        assert r.status_code == 200, r.content

    out = tmp_path / "tidy.zip"
    run_export(study, "tidy", out)
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        trials = list(csv.DictReader(io.TextIOWrapper(z.open("trials.csv"), "utf-8")))
        assert [t["operation"] for t in trials] == ["delete", "insert"]
        lines = [json.loads(x) for x in z.read("interventions/regions.jsonl").decode().splitlines()]
        assert [x["seq"] for x in lines] == [0, 1]
        for line, m in zip(lines, regions, strict=True):
            assert np.array_equal(rle_decode(line["segmentation"]), m)
        voice = ImageAnalysis.objects.get(image=a.image, model=study.model, method="voice")
        u = np.load(io.BytesIO(z.read(f"interventions/maps/{a.image.index}_voice_uncertainty.npy")))
        from studies.intervention.overlays import load_npz

        assert np.array_equal(u, load_npz(voice)["uncertainty"].astype(np.float32))
        assert f"interventions/maps/{a.image.index}_gradcam_map.npy" in names
        assert f"interventions/maps/{a.image.index}_contrast_cam_map.npy" in names
        stats = list(
            csv.DictReader(io.TextIOWrapper(z.open("interventions/image_stats.csv"), "utf-8"))
        )
        assert len(stats) == 1 and float(stats[0]["voice_iou"]) == pytest.approx(voice.stats["iou"])
        causal = ImageAnalysis.objects.get(
            image=a.image, model=study.model, method="causal_gradcam"
        )
        assert float(stats[0]["deletion_auc"]) == pytest.approx(causal.stats["deletion_auc"])
        curves = list(csv.DictReader(io.TextIOWrapper(z.open("interventions/curves.csv"), "utf-8")))
        # every trust score per image, both GradTrusts named, equal to the stored stats
        trust = list(
            csv.DictReader(io.TextIOWrapper(z.open("interventions/trust_scores.csv"), "utf-8"))
        )
        assert len(trust) == 1 and {"grad_trust", "grad_trust_released"} <= set(trust[0])
        for name in TRUST_SCORE_NAMES:
            assert float(trust[0][name]) == voice.stats[f"trust_{name}"], name
        assert int(trust[0]["prediction"]) == voice.stats["prediction"]
        assert sum(1 for c in curves if c["curve"] == "deletion") == causal.stats["n_scores"]
        manifest = json.loads(z.read("manifest.json"))
        listed = json.dumps(manifest)
        for name in names - {"manifest.json"}:
            if name.startswith("interventions/"):
                assert name in listed
                assert hashlib.sha256(z.read(name)).hexdigest() in listed
