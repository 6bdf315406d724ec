"""The intervention study's own "Analysis & exports" page: flip rates by operation and substrate,
area needed to flip, agreement with Grad-CAM / VOICE, per-participant timelines, each plot as
SVG / PNG with its CSV; participants with no trial or marked excluded are named and left out."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from interventions.metrics import rle_encode
from studies.intervention.analysis import TrialRecord, agreement, flip_rates, timelines
from studies.intervention.precompute import start_image_analyses
from tests.factories import ParticipantClient
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights


def record(participant="st1", op="delete", substrate="blur", flipped=False, t=0.0, **kw):
    base = dict(image_index=0, seq=0, area_fraction=0.1, prob_before=0.9, prob_after=0.5,
                gradcam_iou=None, voice_overlap=None)  # fmt: skip
    base.update(kw)
    return TrialRecord(participant, operation=op, substrate=substrate, flipped=flipped,
                       time_s=t, **base)  # fmt: skip


def test_flip_rates_agreement_and_timelines_known_answers():
    trials = [
        record(flipped=True, t=10.0, gradcam_iou=0.5),
        record(flipped=False, t=12.5, seq=1, gradcam_iou=0.3, voice_overlap=0.2),
        record(op="insert", substrate="zero", flipped=True, t=20.0, seq=2),
        record(participant="st2", flipped=True, t=100.0),
    ]
    rates = {(r["operation"], r["substrate"]): r for r in flip_rates(trials)}
    assert rates[("delete", "blur")]["trials"] == 3 and rates[("delete", "blur")]["flips"] == 2
    assert rates[("delete", "blur")]["flip_rate"] == pytest.approx(2 / 3)
    assert 0.0 <= rates[("delete", "blur")]["ci_low"] <= rates[("delete", "blur")]["ci_high"] <= 1
    assert rates[("insert", "zero")]["trials"] == 1 and math.isnan(
        rates[("insert", "zero")]["ci_low"]
    )
    agree = {(r["measure"], r["operation"]): r for r in agreement(trials)}
    assert agree[("gradcam_iou", "delete")]["mean"] == pytest.approx(0.4)
    assert agree[("voice_overlap", "all")]["n"] == 1
    rows = timelines(trials)
    assert [(r["participant"], r["trial"], r["since_start_s"]) for r in rows] == [
        ("st1", 1, 0.0), ("st1", 2, 2.5), ("st1", 3, 10.0), ("st2", 1, 0.0)
    ]  # fmt: skip
    assert flip_rates([]) == [] and agreement([]) == [] and timelines([]) == []


@pytest.mark.django_db
def test_intervention_study_gets_its_own_analysis_page(
    client, tmp_path, django_capture_on_commit_callbacks
):
    study = intervention_study(
        classifier_spec(random_demo_weights(tmp_path)), n_images=1, participants=3
    )
    with django_capture_on_commit_callbacks(execute=True):
        start_image_analyses(study)
    first, second, third = study.participants.order_by("number")
    third.excluded, third.excluded_reason = True, "failed attention check"
    third.save()
    for participant in (first, third):
        pc = ParticipantClient(client, participant)
        pc.consent()
        a = pc.participant.assignments.select_related("image").first()
        for seq, (op, box) in enumerate(
            [("delete", (5, 5, 40, 40)), ("insert", (20, 30, 90, 100))]
        ):
            m = np.zeros((a.image.height, a.image.width), bool)
            m[box[1] : box[3], box[0] : box[2]] = True
            body = {"client_event_id": f"c{seq}", "seq": seq, "operation": op,
                    "region_rle": rle_encode(m)}  # fmt: skip
            assert pc.post(f"assignments/{a.pk}/trials", body).status_code == 200
    client.logout()
    client.force_login(study.owner)
    detail = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/studies/{study.pk}/analysis" id="study-analysis"' in detail
    page = client.get(f"/studies/{study.pk}/analysis")
    html = page.content.decode()
    assert page.status_code == 200 and "Intervention analysis" in html
    assert "Overprompting" not in html and "nan" not in html
    assert "st2 (not started: no trial yet)" in html
    assert "st3 (excluded: failed attention check)" in html
    assert 'id="n-trials">2 ' in html  # the excluded participant's trials are left out
    for name in ("flip_rates", "area_to_flip", "agreement", "timelines"):
        svg = client.get(f"/studies/{study.pk}/intervention/analysis/plots/{name}.svg")
        assert svg.status_code == 200 and b"<svg" in svg.content[:400], name
        png = client.get(f"/studies/{study.pk}/intervention/analysis/plots/{name}.png")
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n", name
    assert client.get(f"/studies/{study.pk}/intervention/analysis/plots/x.svg").status_code == 404
    assert (
        client.get(f"/studies/{study.pk}/intervention/analysis/plots/timelines.gif").status_code
        == 404
    )
    rows = list(csv.DictReader(io.StringIO(client.get(
        f"/studies/{study.pk}/intervention/analysis/timelines.csv").content.decode())))  # fmt: skip
    assert [(r["participant"], r["operation"]) for r in rows] == [
        ("st1", "delete"),
        ("st1", "insert"),
    ]
    rates = client.get(f"/studies/{study.pk}/intervention/analysis/flip_rates.csv").content.decode()
    assert rates.splitlines()[0] == "operation,substrate,trials,flips,flip_rate,ci_low,ci_high"
    assert "nan" not in rates
