"""seed_demo: generated data sets, a researcher, open studies with participants, the JSON contract."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from studies.models import Assignment, Dataset, Participant, Study

pytestmark = pytest.mark.django_db


def seed() -> dict:
    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_prints_the_contract_and_is_idempotent(client):
    data = seed()
    assert set(data["researcher"]) >= {"username", "password"}
    assert "classical" in data["segmentation_backend"]
    prompting = [s for s in data["studies"] if s["kind"] == "prompting"]
    assert len(prompting) >= 3
    for study in data["studies"]:
        assert {"id", "kind", "title", "participants"} <= set(study)
        assert len(study["participants"]) == 3
        for p in study["participants"]:
            assert {"code", "token", "join_url"} <= set(p) and p["join_url"].endswith(p["token"])
    datasets = Dataset.objects.filter(source="generated")
    assert datasets.count() >= 3 and all(d.images.count() >= 20 for d in datasets)
    assert all(s.status == "open" for s in Study.objects.all())
    # the demo's data sets and models are the demo researcher's (issue 25), no one else's
    demo = Study.objects.first().owner
    assert demo.username == data["researcher"]["username"]
    assert all(d.owner == demo for d in Dataset.objects.all())
    assert all(s.model.owner == demo for s in Study.objects.all())
    counts = (
        Dataset.objects.count(),
        Study.objects.count(),
        Participant.objects.count(),
        Assignment.objects.count(),
    )
    again = seed()
    assert (
        Dataset.objects.count(),
        Study.objects.count(),
        Participant.objects.count(),
        Assignment.objects.count(),
    ) == counts
    assert [s["id"] for s in again["studies"]] == [s["id"] for s in data["studies"]]

    # following a join link leads to consent, then to the annotation page
    link = prompting[0]["participants"][0]["join_url"].replace("http://127.0.0.1:8000", "")
    response = client.get(link)
    assert response.status_code == 302 and "/consent" in response["Location"]
    response = client.post(response["Location"], {"agree": "yes", "version": "1"}, follow=True)
    assert response.status_code == 200 and response.redirect_chain
    me = client.get("/api/v1/participants/me").json()
    assert me["code"] == "st1" and me["consented"] is True


def test_demo_data_sets_are_deterministic():
    seed()
    first = {img.index: img.sha256 for img in Dataset.objects.order_by("pk").first().images.all()}
    from interventions.demo_data import generate_scene

    name = Dataset.objects.order_by("pk").first().name
    scene = generate_scene(name, 0, seed=0)
    assert scene.image.shape[2] == 3
    assert len(first) >= 20


@pytest.mark.slow
def test_seed_demo_uses_sam_when_a_checkpoint_is_given(settings, tmp_path):
    """With SAM_CHECKPOINT (here a randomly initialised vit_b) the demo studies use SAM and say so."""
    import torch
    from segment_anything import sam_model_registry

    from studies.core.demo import file_sha256

    torch.manual_seed(0)
    checkpoint = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), checkpoint)
    settings.SAM_CHECKPOINT = str(checkpoint)
    settings.SAM_MODEL_TYPE = "vit_b"
    data = seed()
    assert data["segmentation_backend"].startswith("SAM vit_b")
    sha = file_sha256(checkpoint)
    for study in Study.objects.filter(kind="prompting"):
        assert study.model.kind == "sam" and study.model.architecture == "vit_b"
        assert study.model.weights_sha256 == sha and study.model.model_id == f"sam-vit_b-{sha[:12]}"


def test_seed_demo_names_a_missing_checkpoint(settings, tmp_path):
    settings.SAM_CHECKPOINT = str(tmp_path / "nowhere.pth")
    with pytest.raises(CommandError, match="nowhere.pth is not a file"):
        seed()
    assert not Study.objects.exists()


def test_seed_demo_refuses_production_unless_forced(settings):
    """Issue 11, finding 7: no published superuser password on a deployment."""
    from django.contrib.auth import get_user_model

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production"):
        call_command("seed_demo", "--json", stdout=io.StringIO())
    assert not get_user_model().objects.exists() and not Study.objects.exists()
    out = io.StringIO()
    call_command("seed_demo", "--force-production", stdout=out)
    text = out.getvalue()
    user = get_user_model().objects.get(username="researcher")
    assert not user.check_password("intervene-demo")
    password = text.split("Researcher: researcher / ")[1].split()[0]
    assert len(password) >= 20 and user.check_password(password)
    assert "shown only now" in text
    again = io.StringIO()
    call_command("seed_demo", "--force-production", stdout=again)
    assert password not in again.getvalue() and "password unchanged" in again.getvalue()
