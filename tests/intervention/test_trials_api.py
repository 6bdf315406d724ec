"""POST /api/v1/assignments/<id>/trials: the flow, idempotency, seq, every bad input, access."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from interventions.metrics import rle_decode, rle_encode
from studies.models import InterventionTrial
from tests.factories import ParticipantClient, prompting_study
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    return random_demo_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def study(weights):
    return intervention_study(classifier_spec(weights), n_images=2, overlay="gradcam")


@pytest.fixture
def pc(client, study):
    participant = study.participants.first()
    pc = ParticipantClient(client, participant)
    pc.consent()
    return pc


def first_assignment(pc):
    return pc.participant.assignments.select_related("image").order_by("order").first()


def box(assignment, x0=10, y0=20, x1=50, y1=60) -> np.ndarray:
    mask = np.zeros((assignment.image.height, assignment.image.width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def trial(seq, region, operation="delete", cid=None, **extra):
    return {
        "client_event_id": cid or f"t{seq}",
        "seq": seq,
        "operation": operation,
        "region_rle": region,
        "substrate": "zero",
        **extra,
    }


def expected_probs(spec, assignment, region, operation):
    """Oracle: the classifier on where(region, 0, x) (delete) / where(region, x, 0) (insert),
    written out by hand (normalise at full size, then the preprocess resize)."""
    from workers.intervention_tasks import classifier_for

    clf = classifier_for(spec)
    rgb = np.asarray(Image.open(assignment.image.image.path).convert("RGB"))
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(clf.mean).view(1, 3, 1, 1)) / torch.tensor(clf.std).view(1, 3, 1, 1)
    r = torch.from_numpy(region)[None, None]
    x2 = (
        torch.where(r, torch.zeros_like(x), x)
        if operation == "delete"
        else torch.where(r, x, torch.zeros_like(x))
    )

    def resize(t):
        return torch.nn.functional.interpolate(
            t, size=clf.input_size, mode="bilinear", align_corners=False, antialias=True
        )  # noqa: E731

    with torch.no_grad():
        return torch.softmax(clf.module(resize(x)), 1)[0], torch.softmax(clf.module(resize(x2)), 1)[
            0
        ]


def test_trial_flow_stores_every_trial_and_answers_the_contract(pc, study):
    assignment = first_assignment(pc)
    info = pc.get(f"assignments/{assignment.pk}/intervention")
    assert info.status_code == 200, info.content
    info = info.json()
    assert info["goal"] == "flip" and info["substrate"] == "zero" and info["overlay"] == "gradcam"
    assert len(info["top5"]) == 5 and info["target_class"] == assignment.image.class_label
    probs = [c["prob"] for c in info["top5"]]
    assert probs == sorted(probs, reverse=True)

    region = box(assignment)
    r = pc.post(
        f"assignments/{assignment.pk}/trials", trial(0, rle_encode(region), client_ts=1.5e12)
    )
    assert r.status_code == 200, r.content
    body = r.json()
    for key in (
        "seq",
        "target_class",
        "prob_before",
        "prob_after",
        "top5_before",
        "top5_after",
        "flipped",
        "area_fraction",
        "latency_ms",
    ):
        assert key in body
    before, after = expected_probs(study.model, assignment, region, "delete")
    target = body["target_class"]
    assert body["prob_before"] == pytest.approx(float(before[target]), abs=1e-5)
    assert body["prob_after"] == pytest.approx(float(after[target]), abs=1e-5)
    assert body["flipped"] == (int(after.argmax()) != int(before.argmax()))
    assert body["area_fraction"] == pytest.approx(region.mean())
    assert [c["class"] for c in body["top5_after"]] == after.topk(5).indices.tolist()

    # an insertion with a list-form (uncompressed) RLE of another region
    region2 = box(assignment, 30, 30, 100, 90)
    runs = []
    flat = region2.flatten(order="F").astype(int)
    value, run = 0, 0
    for v in flat:
        if v != value:
            runs.append(run)
            value, run = v, 0
        run += 1
    runs.append(run)
    r = pc.post(
        f"assignments/{assignment.pk}/trials",
        trial(1, {"size": list(region2.shape), "counts": runs}, "insert"),
    )
    assert r.status_code == 200, r.content
    _, after2 = expected_probs(study.model, assignment, region2, "insert")
    assert r.json()["prob_after"] == pytest.approx(float(after2[target]), abs=1e-5)

    rows = list(InterventionTrial.objects.filter(assignment=assignment).order_by("seq"))
    assert [t.seq for t in rows] == [0, 1]
    assert [t.operation for t in rows] == ["delete", "insert"]
    assert rows[0].overlay == "gradcam" and rows[0].client_ts == 1.5e12
    assert np.array_equal(rle_decode(rows[1].region_rle), region2)
    for t in rows:
        assert 0.0 <= t.gradcam_iou <= 1.0 and 0.0 <= t.voice_overlap <= 1.0
        assert t.model_id == study.model.model_id
    state = pc.get(f"assignments/{assignment.pk}/trials").json()
    assert state["next_seq"] == 2 and len(state["trials"]) == 2

    assert pc.post(f"assignments/{assignment.pk}/finish", {}).status_code == 200
    assert (
        pc.post(
            f"assignments/{assignment.pk}/survey", {"answers": {"looked_at_object": "yes"}}
        ).status_code
        == 200
    )
    late = pc.post(f"assignments/{assignment.pk}/trials", trial(2, rle_encode(region)))
    assert late.status_code == 409
    assert InterventionTrial.objects.filter(assignment=assignment).count() == 2


def test_trials_are_idempotent_and_in_seq_order(pc):
    assignment = first_assignment(pc)
    rle = rle_encode(box(assignment))
    first = pc.post(f"assignments/{assignment.pk}/trials", trial(0, rle, cid="same"))
    again = pc.post(f"assignments/{assignment.pk}/trials", trial(0, rle, cid="same"))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert InterventionTrial.objects.filter(assignment=assignment).count() == 1

    other = pc.post(
        f"assignments/{assignment.pk}/trials",
        trial(0, rle_encode(box(assignment, 0, 0, 5, 5)), cid="same"),
    )
    assert other.status_code == 409

    skipped = pc.post(f"assignments/{assignment.pk}/trials", trial(5, rle))
    assert skipped.status_code == 409 and skipped.json()["expected_seq"] == 1
    stale = pc.post(f"assignments/{assignment.pk}/trials", trial(0, rle, cid="new"))
    assert stale.status_code == 409 and stale.json()["expected_seq"] == 1
    assert InterventionTrial.objects.filter(assignment=assignment).count() == 1


def _bad_payloads(h, w):
    full = np.ones((h, w), dtype=bool)
    good = rle_encode(np.pad(np.ones((4, 4), bool), ((0, h - 4), (0, w - 4))))
    return [
        ("client_event_id", {**trial(0, good), "client_event_id": ""}),
        ("client_event_id", {k: v for k, v in trial(0, good).items() if k != "client_event_id"}),
        ("seq", {**trial(0, good), "seq": "0"}),
        ("seq", {**trial(0, good), "seq": -1}),
        ("seq", {**trial(0, good), "seq": True}),
        ("operation", trial(0, good, operation="erase")),
        ("operation", {k: v for k, v in trial(0, good).items() if k != "operation"}),
        ("substrate", {**trial(0, good), "substrate": "plasma"}),
        ("substrate", {**trial(0, good), "substrate": "blur"}),  # not this study's substrate
        ("client_ts", {**trial(0, good), "client_ts": "yesterday"}),
        ("region_rle", {k: v for k, v in trial(0, good).items() if k != "region_rle"}),
        ("region_rle", trial(0, "not an rle")),
        ("region_rle", trial(0, {**good, "extra": 1})),
        ("region_rle", trial(0, rle_encode(np.zeros((h, w), bool)))),  # empty
        ("region_rle", trial(0, rle_encode(np.ones((h + 1, w), bool)))),  # wrong size
        ("region_rle", trial(0, rle_encode(np.ones((w, h + 3), bool)))),  # wrong size
        ("region_rle", trial(0, {"size": [h, w], "counts": "!!!!"})),  # invalid characters
        ("region_rle", trial(0, {"size": [h, w], "counts": "0"})),  # covers 0 of h*w pixels
        (
            "region_rle",
            trial(0, {"size": [h, w], "counts": [0, h * w + 10]}),
        ),  # runs past the image
        ("region_rle", trial(0, {"size": [h, w], "counts": [0, -5, h * w + 5]})),
        ("region_rle", trial(0, {"size": [h, w], "counts": [0, 1.5]})),
        ("region_rle", trial(0, {"size": [float(h), w], "counts": rle_encode(full)["counts"]})),
        ("region_rle", trial(0, {"size": [h, w], "counts": 7})),
    ]


def test_every_bad_input_is_a_400_naming_the_field_and_stores_nothing(pc):
    assignment = first_assignment(pc)
    for field, payload in _bad_payloads(assignment.image.height, assignment.image.width):
        r = pc.post(f"assignments/{assignment.pk}/trials", payload)
        assert r.status_code == 400, (field, payload, r.content)
        body = r.json()
        assert body.get("field") == field and field in body["error"], (field, body)
    for raw in (b"[1, 2]", b'{"client_event_id": "a", "seq": 0, "client_ts": NaN}', b"{not json"):
        r = pc.post(f"assignments/{assignment.pk}/trials", raw)
        assert r.status_code == 400, r.content
        assert "error" in r.json()
    assignment.refresh_from_db()
    assert assignment.next_seq == 0 and assignment.status == "pending"
    assert not InterventionTrial.objects.exists()


def test_access_rules(client, pc, study, weights):
    assignment = first_assignment(pc)
    rle = rle_encode(box(assignment))
    # no credentials, another study's participant, no consent
    assert (
        client.post(
            f"/api/v1/assignments/{assignment.pk}/trials",
            data=trial(0, rle),
            content_type="application/json",
        ).status_code
        == 401
    )
    other = intervention_study(classifier_spec(weights), n_images=2)
    stranger = ParticipantClient(client, other.participants.first())
    assert (
        stranger.post(f"assignments/{assignment.pk}/trials", trial(0, rle)).status_code == 403
    )  # not consented
    stranger.consent()
    assert stranger.post(f"assignments/{assignment.pk}/trials", trial(0, rle)).status_code == 404
    # a prompting study takes events, not trials
    prompting = prompting_study(participants=1)
    pp = ParticipantClient(client, prompting.participants.first())
    pp.consent()
    pa = pp.participant.assignments.first()
    r = pp.post(f"assignments/{pa.pk}/trials", trial(0, rle))
    assert r.status_code == 400 and "not an intervention study" in r.json()["error"]
    assert not InterventionTrial.objects.exists()


def test_top5_and_overlay_follow_the_study_options(client, weights):
    hidden = intervention_study(
        classifier_spec(weights), n_images=1, show_top5=False, overlay="none"
    )
    pc = ParticipantClient(client, hidden.participants.first())
    pc.consent()
    a = first_assignment(pc)
    info = pc.get(f"assignments/{a.pk}/intervention").json()
    assert info["top5"] is None and info["overlay_url"] is None
    assert pc.get(f"assignments/{a.pk}/overlay.png").status_code == 404
    r = pc.post(f"assignments/{a.pk}/trials", trial(0, rle_encode(box(a))))
    assert r.status_code == 200 and r.json()["top5_after"] is None
    stored = InterventionTrial.objects.get(assignment=a)
    assert len(stored.top5_after) == 5 and stored.overlay == "none"

    shown = intervention_study(classifier_spec(weights), n_images=1, overlay="voice")
    pc2 = ParticipantClient(client, shown.participants.first())
    pc2.consent()
    a2 = first_assignment(pc2)
    info = pc2.get(f"assignments/{a2.pk}/intervention").json()
    assert info["overlay"] == "voice" and info["overlay_url"].endswith(
        f"/assignments/{a2.pk}/overlay.png"
    )
    png = pc2.get(f"assignments/{a2.pk}/overlay.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    import io

    img = Image.open(io.BytesIO(b"".join(png.streaming_content) if png.streaming else png.content))
    assert img.mode == "RGBA" and img.size == (a2.image.width, a2.image.height)
    assert np.asarray(img)[..., 3].max() > 0
