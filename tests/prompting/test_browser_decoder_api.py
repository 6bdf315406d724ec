"""The server side of the browser decoder (docs/browser_decoder.md): the ONNX export job when a
SAM study opens, the decoder.samdec / embedding.f16 endpoints, the `decoder` block, the `shown`
object of a prompt event (checked, IoU vs the server's mask computed here) and its columns in
the tidy export. SAM is a tiny seeded random model put into the worker's model cache."""

import csv
import io
import json
import uuid
import zipfile

import numpy as np
import pytest

from interventions.metrics import iou, rle_decode, rle_encode
from interventions.segmentation.browser import embedding_from_f16_bytes, mask_sha256
from studies.core.exports import run_export
from studies.models import Job, ModelSpec, PromptEvent
from tests.factories import ParticipantClient, prompting_study
from tests.science.test_segmentation_sam import tiny_sam

pytestmark = pytest.mark.django_db


def sam_study(django_capture_on_commit_callbacks, **protocol):
    """An open prompting study on a tiny SAM (in the worker cache), opened as the researcher's
    page opens it: on_open's jobs run (eager Celery) once the transaction commits."""
    import torch

    from interventions.segmentation.onnx_export import state_dict_sha256
    from interventions.segmentation.sam import SamBackend
    from workers import model_cache

    torch.set_num_threads(2)
    sam = tiny_sam()
    sha = state_dict_sha256(sam)
    spec = ModelSpec.objects.create(
        name="tiny SAM",
        kind="sam",
        architecture="vit_b",
        weights_path="tiny.pth",
        weights_sha256=sha,
    )
    model_cache._backends[(spec.pk, sha)] = SamBackend.from_model(
        sam, model_id=spec.model_id, weights_sha256=sha, device="cpu"
    )
    study = prompting_study(n_images=2, participants=2, status="draft", **protocol)
    study.model = spec
    study.status = "open"
    study.save()
    with django_capture_on_commit_callbacks(execute=True):
        jobs = study.kind_spec.on_open(study)
    return study, jobs


def participant_api(client, study, number=1, consent=True):
    api = ParticipantClient(client, study.participants.get(number=number))
    if consent:
        api.consent()
    return api


def first_assignment(api):
    return api.participant.assignments.order_by("order").first()


def clicking(client, study):
    """Participant 1 of `study` (consented), their first assignment, its height and width, and
    a Clicks on it."""
    api = participant_api(client, study)
    assignment = first_assignment(api)
    h, w = assignment.image.height, assignment.image.width
    return api, assignment, h, w, Clicks(api, assignment)


def test_sam_study_exports_its_decoder_and_serves_both_files(
    client, django_capture_on_commit_callbacks, settings
):
    study, jobs = sam_study(django_capture_on_commit_callbacks)
    assert [j.kind for j in jobs] == ["precompute", "onnx_export"]
    assert {j.status for j in Job.objects.filter(study=study)} == {"done"}
    api = participant_api(client, study)
    assignment = first_assignment(api)

    state = api.get(f"assignments/{assignment.pk}").json()
    block = state["decoder"]
    assert block["available"] is True and block["reason"] is None
    assert block["mask_choice"] == "first" and block["hover_preview"] is False
    assert block["model_url"] == f"/api/v1/assignments/{assignment.pk}/decoder.samdec"

    model = client.get(block["model_url"], **api.headers)
    assert model.status_code == 200
    assert model["Cache-Control"] == "private, max-age=31536000, immutable"
    from studies.prompting.decoder_files import decoder_file

    onnx = b"".join(model.streaming_content)
    assert onnx == decoder_file(study.model).read_bytes() and len(onnx) > 1_000_000
    again = client.get(block["model_url"], HTTP_IF_NONE_MATCH=model["ETag"], **api.headers)
    assert again.status_code == 304

    emb = client.get(block["embedding_url"], **api.headers)
    assert emb.status_code == 200 and emb["Cache-Control"].endswith("immutable")
    assert assignment.image.sha256[:32] in emb["ETag"] and study.model.model_id in emb["ETag"]
    parsed = embedding_from_f16_bytes(b"".join(emb.streaming_content), study.model.model_id)
    from workers.model_cache import backend_for, embedding_cache

    server = embedding_cache().get(
        assignment.image.sha256, study.model.model_id, study.model.weights_sha256
    )
    assert server is not None  # precomputed on open
    want = server.arrays["features"].astype(np.float16).astype(np.float32)
    assert np.array_equal(parsed.arrays["features"], want)
    assert parsed.original_size == (assignment.image.height, assignment.image.width)

    # a missing float16 file is written again by the worker task, not by the view
    from studies.prompting.decoder_files import embedding_file

    path = embedding_file(study.model, assignment.image.sha256)
    path.unlink()
    assert client.get(block["embedding_url"], **api.headers).status_code == 200
    assert path.is_file()

    # exporting twice reuses the cached file (keyed by weights sha256)
    before = decoder_file(study.model).stat().st_mtime_ns
    job = Job.objects.create(study=study, kind="onnx_export")
    from workers.tasks import export_decoder

    assert export_decoder.delay(job.pk).get()["exported"] is True
    assert decoder_file(study.model).stat().st_mtime_ns == before
    assert backend_for(study.model) is not None


def test_participants_reach_only_their_own_files_after_consent(
    client, django_capture_on_commit_callbacks
):
    study, _ = sam_study(django_capture_on_commit_callbacks)
    mine = participant_api(client, study, 1)
    other = participant_api(client, study, 2, consent=False)
    theirs = first_assignment(other)
    for name in ("decoder.samdec", "embedding.f16"):
        response = mine.get(f"assignments/{theirs.pk}/{name}")
        assert response.status_code == 404, name
        assert other.get(f"assignments/{theirs.pk}/{name}").status_code == 403


def test_study_page_shows_the_decoder_export_job(client, django_capture_on_commit_callbacks):
    study, _ = sam_study(django_capture_on_commit_callbacks)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="job-onnx_export"' in page and "Browser decoder" in page
    assert 'id="onnx_export-status">Done<' in page
    job = Job.objects.get(study=study, kind="onnx_export")
    job.status, job.error = "failed", "onnx export failed: out of memory"
    job.save()
    page = client.get(f"/studies/{study.pk}/progress").content.decode()
    assert 'id="onnx_export-error">onnx export failed: out of memory<' in page
    classical = prompting_study(n_images=1, participants=0)
    client.force_login(classical.owner)
    assert "job-onnx_export" not in client.get(f"/studies/{classical.pk}/").content.decode()


def test_classical_study_has_no_decoder_and_says_why(client, django_capture_on_commit_callbacks):
    study = prompting_study(n_images=2, participants=1)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = study.kind_spec.on_open(study)
    assert [j.kind for j in jobs] == ["precompute"]
    api = participant_api(client, study)
    assignment = first_assignment(api)
    block = api.get(f"assignments/{assignment.pk}").json()["decoder"]
    assert block["available"] is False and "classical" in block["reason"]
    for name in ("decoder.samdec", "embedding.f16"):
        response = api.get(f"assignments/{assignment.pk}/{name}")
        assert response.status_code == 404
        assert "classical" in response.json()["error"]


def test_decoder_turned_off_or_not_exported_is_404_with_the_reason(
    client, django_capture_on_commit_callbacks
):
    study, jobs = sam_study(django_capture_on_commit_callbacks, browser_decoder=False)
    assert [j.kind for j in jobs] == ["precompute"]
    api = participant_api(client, study)
    assignment = first_assignment(api)
    response = api.get(f"assignments/{assignment.pk}/decoder.samdec")
    assert response.status_code == 404 and "browser_decoder" in response.json()["error"]
    study.protocol = {**study.protocol, "browser_decoder": True}
    study.save()
    response = api.get(f"assignments/{assignment.pk}/decoder.samdec")
    assert response.status_code == 404 and "not exported yet" in response.json()["error"]
    # the page's state starts the export the study never had (once), and says not yet
    assert api.get(f"assignments/{assignment.pk}").json()["decoder"]["available"] is False
    assert api.get(f"assignments/{assignment.pk}").json()["decoder"]["available"] is False
    assert Job.objects.filter(study=study, kind="onnx_export", status="queued").count() == 1


def test_a_missing_decoder_file_is_exported_again_unless_the_last_export_failed(
    client, django_capture_on_commit_callbacks
):
    """A new decoder format (or a cleared cache) leaves an open study without its file: the
    next page state exports it again; a failed export is left for the researcher."""
    from studies.prompting.decoder_files import decoder_file

    study, _ = sam_study(django_capture_on_commit_callbacks)
    api = participant_api(client, study)
    assignment = first_assignment(api)
    path = decoder_file(study.model)
    path.unlink()
    with django_capture_on_commit_callbacks(execute=True):
        api.get(f"assignments/{assignment.pk}")  # the export runs once this request commits
    assert path.is_file()
    assert api.get(f"assignments/{assignment.pk}").json()["decoder"]["available"] is True
    jobs = Job.objects.filter(study=study, kind="onnx_export").order_by("pk")
    assert [j.status for j in jobs] == ["done", "done"]
    path.unlink()
    Job.objects.filter(pk=jobs.last().pk).update(status="failed", error="out of memory")
    with django_capture_on_commit_callbacks(execute=True):
        block = api.get(f"assignments/{assignment.pk}").json()["decoder"]
    assert block["available"] is False and "not exported yet" in block["reason"]
    assert Job.objects.filter(study=study, kind="onnx_export").count() == 2


# ------------------------------------------------------------------ the shown object of an event


class Clicks:
    def __init__(self, api, assignment):
        self.api, self.assignment, self.seq = api, assignment, 0

    def post(self, action, mode="", x=None, y=None, shown=None, expect=200):
        self.cid = str(uuid.uuid4())
        body = {"client_event_id": self.cid, "seq": self.seq, "action": action}
        if mode:
            body.update(mode=mode, x=x, y=y)
        if shown is not None:
            body["shown"] = shown
        response = self.api.post(f"assignments/{self.assignment.pk}/events", body)
        assert response.status_code == expect, response.content
        if expect == 200:
            self.seq += 1
        return response.json()


def shown_of(mask, latency=12.5, **extra):
    return {
        "mask_rle": rle_encode(mask),
        "sha256": mask_sha256(mask),
        "latency_ms": latency,
        "source": "local",
        **extra,
    }


def test_shown_mask_is_logged_with_its_iou_vs_the_server_mask(client):
    study = prompting_study(n_images=2, participants=1)
    api, assignment, h, w, clicks = clicking(client, study)
    clicks.post("add", "green", w // 2, h // 2)
    shown = np.zeros((h, w), bool)
    shown[: h // 2, : w // 2] = True
    answer = clicks.post("add", "red", 1, 1, shown=shown_of(shown, latency=33.0))
    server = rle_decode(answer["mask_rle"])
    row = PromptEvent.objects.get(assignment=assignment, seq=1)
    assert row.shown_mask_sha256 == mask_sha256(shown)
    assert row.client_latency_ms == 33.0
    assert row.shown_iou_vs_server == pytest.approx(iou(shown, server))
    assert 0 < row.shown_iou_vs_server < 1
    assert answer["shown_iou_vs_server"] == row.shown_iou_vs_server

    # the same prompt again, with only the hash of the server's mask: identical, IoU 1
    clicks.post("clear")
    clicks.post("add", "green", w // 2, h // 2)
    only_hash = {"sha256": mask_sha256(server), "source": "local", "latency_ms": 5}
    again = clicks.post("add", "red", 1, 1, shown=only_hash)
    assert again["mask_rle"] == answer["mask_rle"]
    row = PromptEvent.objects.get(assignment=assignment, seq=4)
    assert row.shown_iou_vs_server == 1.0 and row.client_latency_ms == 5
    # a hash of another mask without its RLE: logged, IoU unknown
    clicks.post("clear")
    clicks.post("add", "green", w // 2, h // 2)
    clicks.post("add", "red", 1, 1, shown={"sha256": "0" * 64, "source": "local"})
    row = PromptEvent.objects.get(assignment=assignment, seq=7)
    assert row.shown_mask_sha256 == "0" * 64 and row.shown_iou_vs_server is None
    # events without shown keep the fields empty
    assert PromptEvent.objects.get(assignment=assignment, seq=0).shown_mask_sha256 is None


# bad `shown` objects and the field the 400 names: the same checks on both paths
BAD_SHOWN = [
    ({"sha256": "0" * 64, "source": "local", "colour": 1}, "shown"),
    ({"sha256": "0" * 64, "source": "server"}, "shown.source"),
    ({"sha256": "0" * 63, "source": "local"}, "shown.sha256"),
    ({"sha256": "A" * 64, "source": "local"}, "shown.sha256"),
    ({"sha256": "0" * 64, "source": "local", "latency_ms": -1}, "shown.latency_ms"),
    ({"sha256": "0" * 64, "source": "local", "latency_ms": 1e12}, "shown.latency_ms"),
    ({"sha256": "0" * 64, "source": "local", "latency_ms": "fast"}, "shown.latency_ms"),
    ({"sha256": "0" * 64, "source": "local", "mask_rle": {"size": [2, 2]}}, "shown.mask_rle"),
    (
        {"sha256": "0" * 64, "source": "local", "mask_rle": {"size": [2, 2], "counts": "0"}},
        "shown.mask_rle",
    ),
    ("WRONG_HASH", "shown.sha256"),
]


def one_image(client):
    """A classical study's participant (consented) and their assignment, with its size."""
    api, assignment, h, w, _ = clicking(client, prompting_study(n_images=1, participants=1))
    return api, assignment, h, w


def bad_shown(shown, h, w):
    """`shown` as given, or a mask's RLE with the hash of its complement ("WRONG_HASH")."""
    if shown != "WRONG_HASH":
        return shown
    mask = np.ones((h, w), bool)
    return {**shown_of(mask), "sha256": mask_sha256(~mask)}


@pytest.mark.parametrize("shown, field", [("yes", "shown"), *BAD_SHOWN])
def test_bad_shown_is_a_400_naming_the_field_and_stores_nothing(client, shown, field):
    api, assignment, h, w = one_image(client)
    clicks = Clicks(api, assignment)
    answer = clicks.post("add", "green", 3, 3, shown=bad_shown(shown, h, w), expect=400)
    assert answer["field"] == field, answer
    assert field in answer["error"]
    assert not PromptEvent.objects.filter(assignment=assignment).exists()


# ------------------------------------------- the shown mask sent after the event's answer


def post_shown(api, assignment, cid, body, expect=200):
    response = api.post(f"assignments/{assignment.pk}/events/{cid}/shown", body)
    assert response.status_code == expect, response.content
    return response.json()


def test_shown_sent_after_the_answer_is_written_once_and_leaves_the_record_alone(client):
    study = prompting_study(n_images=2, participants=1)
    api, assignment, h, w, clicks = clicking(client, study)
    clicks.post("add", "green", w // 2, h // 2)
    answer = clicks.post("add", "red", 1, 1)
    row = PromptEvent.objects.get(assignment=assignment, seq=1)
    assert row.shown_mask_sha256 is None
    before = {f: getattr(row, f) for f in ("mask_rle", "iou", "latency_ms", "response", "timestep")}

    shown = np.zeros((h, w), bool)
    shown[: h // 2, :] = True
    got = post_shown(api, assignment, clicks.cid, shown_of(shown, latency=41.5))
    server = rle_decode(answer["mask_rle"])
    row.refresh_from_db()
    assert row.shown_mask_sha256 == mask_sha256(shown) and row.client_latency_ms == 41.5
    assert row.shown_iou_vs_server == pytest.approx(iou(shown, server))
    assert got == {
        "client_event_id": clicks.cid,
        "seq": 1,
        "shown_mask_sha256": mask_sha256(shown),
        "shown_iou_vs_server": row.shown_iou_vs_server,
    }
    assert before == {f: getattr(row, f) for f in before}  # the server's record is untouched
    # a retry replays; another mask for the same event is refused and changes nothing
    assert post_shown(api, assignment, clicks.cid, shown_of(shown, latency=41.5)) == got
    answer409 = post_shown(api, assignment, clicks.cid, shown_of(~shown), expect=409)
    assert "already records another shown mask" in answer409["error"]
    row.refresh_from_db()
    assert row.shown_mask_sha256 == mask_sha256(shown)
    # only the hash of the server's own mask: identical
    clicks.post("add", "red", 2, 2)
    server = rle_decode(PromptEvent.objects.get(assignment=assignment, seq=2).mask_rle)
    only_hash = {"sha256": mask_sha256(server), "source": "local", "latency_ms": 7}
    assert post_shown(api, assignment, clicks.cid, only_hash)["shown_iou_vs_server"] == 1.0
    # the tidy export reads the same columns as for a shown sent with the event
    assert PromptEvent.objects.filter(shown_mask_sha256__isnull=False).count() == 2


@pytest.mark.parametrize("body, field", [([1, 2], None), *BAD_SHOWN])
def test_bad_shown_follow_up_is_a_400_naming_the_field_and_stores_nothing(client, body, field):
    api, assignment, h, w = one_image(client)
    clicks = Clicks(api, assignment)
    clicks.post("add", "green", w // 2, h // 2)
    answer = post_shown(api, assignment, clicks.cid, bad_shown(body, h, w), expect=400)
    assert answer.get("field") == field, answer
    assert not PromptEvent.objects.filter(shown_mask_sha256__isnull=False).exists()


def test_shown_follow_up_needs_the_participants_own_stored_event(client):
    study = prompting_study(n_images=1, participants=3)
    api, assignment, h, w, clicks = clicking(client, study)
    clicks.post("add", "green", w // 2, h // 2)
    shown = shown_of(np.ones((h, w), bool))
    missing = post_shown(api, assignment, "not-posted-yet", shown, expect=404)
    assert "post the event first" in missing["error"]
    other = participant_api(client, study, number=2)
    post_shown(other, assignment, clicks.cid, shown, expect=404)  # not their assignment
    unconsented = participant_api(client, study, number=3, consent=False)
    assert "consent" in post_shown(unconsented, assignment, clicks.cid, shown, expect=403)["error"]
    assert not PromptEvent.objects.filter(shown_mask_sha256__isnull=False).exists()
    study.status = "closed"
    study.save()
    post_shown(api, assignment, clicks.cid, shown, expect=409)


def read_csv(zf, name):
    return list(csv.DictReader(io.StringIO(zf.read(name).decode())))


def test_tidy_export_adds_the_shown_columns_only_when_a_study_has_them(client, tmp_path):
    study = prompting_study(n_images=1, participants=1)
    api, assignment, h, w, clicks = clicking(client, study)
    clicks.post("add", "green", w // 2, h // 2)
    run_export(study, "tidy", tmp_path / "before.zip")
    with zipfile.ZipFile(tmp_path / "before.zip") as zf:
        header = zf.read("events.csv").decode().splitlines()[0].split(",")
        assert header[-1] == "stop_reason" and "shown_mask_sha256" not in header
        assert "events_with_shown" not in json.loads(zf.read("manifest.json"))["counts"]

    shown = np.zeros((h, w), bool)
    shown[h // 3 :, :] = True
    clicks.post("add", "red", 1, 1, shown=shown_of(shown, latency=40.0))
    run_export(study, "tidy", tmp_path / "after.zip")
    with zipfile.ZipFile(tmp_path / "after.zip") as zf:
        header = zf.read("events.csv").decode().splitlines()[0].split(",")
        assert header[-3:] == ["shown_mask_sha256", "shown_iou_vs_server", "client_latency_ms"]
        rows = read_csv(zf, "events.csv")
        assert rows[0]["shown_mask_sha256"] == "" and rows[0]["client_latency_ms"] == ""
        assert rows[1]["shown_mask_sha256"] == mask_sha256(shown)
        row = PromptEvent.objects.get(assignment=assignment, seq=1)
        assert float(rows[1]["shown_iou_vs_server"]) == row.shown_iou_vs_server
        assert float(rows[1]["client_latency_ms"]) == 40.0
        assert json.loads(zf.read("manifest.json"))["counts"]["events_with_shown"] == 1


def test_a_shown_mask_with_a_long_rle_is_taken_on_both_paths(client):
    """A 320 x 320 image and a striped shown mask: its RLE (~100 000 characters) is above the
    64 KiB that other participant requests may send, and is recorded with the event and as a
    follow-up, as any mask the page could draw."""
    from interventions.demo_data import generate_scene
    from studies.core.datasets import create_dataset

    scene = generate_scene("Clean shapes", 0, size=320)
    study = prompting_study(n_images=1, participants=0)
    study.dataset = create_dataset(
        "big", [(scene.image, scene.mask, scene.label, scene.class_name)], source="generated"
    )
    study.save()
    from studies.core.enrolment import enrol_participant

    enrol_participant(study)
    api, assignment, h, w, clicks = clicking(client, study)
    stripes = (np.arange(h)[:, None] + np.zeros(w, int)[None, :]) % 2 == 0
    body = shown_of(stripes)
    assert len(body["mask_rle"]["counts"]) > 64 * 1024
    clicks.post("add", "green", w // 2, h // 2, shown=body)
    clicks.post("add", "green", w // 3, h // 3)
    post_shown(api, assignment, clicks.cid, shown_of(~stripes))
    rows = PromptEvent.objects.filter(assignment=assignment).order_by("seq")
    assert [r.shown_mask_sha256 for r in rows] == [mask_sha256(stripes), mask_sha256(~stripes)]
