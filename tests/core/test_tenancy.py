"""Data sets, model specs and trust evaluations belong to someone (issue 25): a plain second
account gets 404 on every page, file, form choice and export path of another researcher's
private data set, model and evaluation; a collaborator and the lab-wide flag grant access; the
sharing form does not tell a researcher which usernames exist."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from studies.core.datasets import create_dataset
from studies.models import Dataset, ModelSpec, Study, TrustEvaluation, TrustScoreRow
from tests.core.test_ui_researcher import study_post
from tests.factories import researcher

pytestmark = pytest.mark.django_db


def private_dataset(owner, name: str = "Polyps") -> Dataset:
    rng = np.random.default_rng(0)
    items = []
    for i in range(2):
        image = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        mask = np.zeros((24, 24), bool)
        mask[4:12, 4:12] = True
        items.append((image, mask, i % 2, f"class{i % 2}"))
    dataset = create_dataset(name, items, source="upload")
    dataset.owner = owner
    dataset.save(update_fields=["owner"])
    return dataset


@pytest.fixture
def world():
    """alice's private data set, models, study on them and trust evaluation; bob, plain."""
    alice, bob = researcher("alice"), researcher("bob")
    dataset = private_dataset(alice)
    segmenter = ModelSpec.objects.create(
        name="alice segmenter", kind="classical", architecture="classical-v1", owner=alice
    )
    classifier = ModelSpec.objects.create(
        name="alice cnn", kind="classifier", architecture="demo", owner=alice,
        class_names=["class0", "class1"],
    )  # fmt: skip
    study = Study.objects.create(
        kind="prompting", title="Alice's secret polyp study", dataset=dataset, model=segmenter,
        owner=alice,
    )  # fmt: skip
    evaluation = TrustEvaluation.objects.create(
        model=classifier, dataset=dataset, created_by=alice, status="done",
        summary={"n_images": 2, "n_correct": 1, "accuracy": 0.5, "scores": []},
    )  # fmt: skip
    image = dataset.images.order_by("index").first()
    TrustScoreRow.objects.create(
        evaluation=evaluation, image=image, label=1, prediction=0, correct=False, scores={}
    )
    return {
        "alice": alice, "bob": bob, "dataset": dataset, "segmenter": segmenter,
        "classifier": classifier, "study": study, "evaluation": evaluation, "image": image,
    }  # fmt: skip


def urls(w) -> list[str]:
    d, im, m, c, e = w["dataset"], w["image"], w["segmenter"], w["classifier"], w["evaluation"]
    return [
        f"/datasets/{d.pk}/",
        f"/datasets/{d.pk}/thumbs/{im.pk}/image.png",
        f"/datasets/{d.pk}/thumbs/{im.pk}/mask.png",
        f"/models/{m.pk}/",
        f"/models/{c.pk}/",
        f"/trust/{e.pk}/",
        f"/trust/{e.pk}/progress.json",
        f"/trust/{e.pk}/scores.csv",
        f"/trust/{e.pk}/summary.csv",
        f"/studies/{w['study'].pk}/",
        f"/studies/{w['study'].pk}/images/{im.pk}/image.png",
        f"/api/v1/studies/{w['study'].pk}/exports",
    ]


def sharing_posts(w) -> list[str]:
    return [
        f"/datasets/{w['dataset'].pk}/sharing",
        f"/models/{w['segmenter'].pk}/sharing",
        f"/trust/{w['evaluation'].pk}/sharing",
    ]


def test_a_second_account_gets_404_everywhere(client, world, django_capture_on_commit_callbacks):
    client.force_login(world["bob"])
    for url in urls(world):
        assert client.get(url).status_code == 404, url
    for url in sharing_posts(world):
        response = client.post(url, {"shared_with_lab": "on", "collaborators": "bob"})
        assert response.status_code == 404, url
    # nothing listed, no title of alice's study anywhere
    for url in ("/datasets/", "/models/", "/trust/", "/studies/"):
        page = client.get(url).content.decode()
        assert "Polyps" not in page and "alice segmenter" not in page, url
        assert "secret polyp" not in page, url
    # the study form and the trust form neither offer nor accept alice's data set or models
    form = client.get("/studies/new").content.decode()
    assert "Polyps" not in form and "alice segmenter" not in form
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/studies/new", study_post(world["dataset"], world["segmenter"], title="stolen")
        )
    assert response.status_code == 200 and not Study.objects.filter(title="stolen").exists()
    errors = response.content.decode()
    assert "Select a valid choice" in errors and "Polyps" not in errors
    trust_form = client.get("/trust/new").content.decode()
    assert "Polyps" not in trust_form and "alice cnn" not in trust_form
    response = client.post(
        "/trust/new",
        {"model": world["classifier"].pk, "dataset": world["dataset"].pk, "batch_size": 2,
         "mcd_seed": 0},
    )  # fmt: skip
    assert response.status_code == 400 and TrustEvaluation.objects.count() == 1
    # (nothing was shared on the way)
    world["dataset"].refresh_from_db()
    assert not world["dataset"].shared_with_lab and not world["dataset"].collaborators.exists()


def test_a_staff_account_is_no_exception_but_a_superuser_is(client, world):
    bob = world["bob"]
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    assert client.get(f"/datasets/{world['dataset'].pk}/").status_code == 404
    assert client.get(f"/trust/{world['evaluation'].pk}/").status_code == 404
    bob.is_superuser = True
    bob.save()
    assert client.get(f"/datasets/{world['dataset'].pk}/").status_code == 200
    assert client.get(f"/trust/{world['evaluation'].pk}/").status_code == 200


def test_the_owner_shares_with_a_collaborator(client, world, django_capture_on_commit_callbacks):
    alice, bob, dataset = world["alice"], world["bob"], world["dataset"]
    client.force_login(alice)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'id="sharing-form"' in page and "Alice&#x27;s secret polyp study" in page
    for url in [*sharing_posts(world), f"/models/{world['classifier'].pk}/sharing"]:
        response = client.post(url, {"collaborators": "bob"})
        assert response.status_code == 302, url
    client.force_login(bob)
    for url in urls(world)[:9]:  # the data set's, models' and evaluation's pages and files
        response = client.get(url)
        assert response.status_code == 200, url
    image = client.get(f"/datasets/{dataset.pk}/thumbs/{world['image'].pk}/image.png")
    assert b"".join(image.streaming_content).startswith(b"\x89PNG")
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    # a collaborator of the data set is not one of alice's study: its title stays hers
    assert "secret polyp" not in page and "none yet" in page
    assert 'id="sharing-readonly"' in page and "You are one of its collaborators" in page
    # ... and changes nothing about who else sees it
    response = client.post(f"/datasets/{dataset.pk}/sharing", {"shared_with_lab": "on"})
    assert response.status_code == 403
    dataset.refresh_from_db()
    assert not dataset.shared_with_lab
    # bob may now build a study (and so an export) on alice's data set and model
    assert "Polyps" in client.get("/studies/new").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/studies/new", study_post(dataset, world["segmenter"], title="Bob's study")
        )
    assert response.status_code == 302
    assert Study.objects.get(title="Bob's study").owner == bob
    # the owner takes it back: 404 again for pages and files (bob's own study stays his)
    client.force_login(alice)
    client.post(f"/datasets/{dataset.pk}/sharing", {"collaborators": ""})
    client.force_login(bob)
    assert client.get(f"/datasets/{dataset.pk}/").status_code == 404
    assert client.get(urls(world)[1]).status_code == 404
    bobs = Study.objects.get(title="Bob's study")
    assert client.get(f"/studies/{bobs.pk}/").status_code == 200
    # editing it keeps its (no longer shared) data set without offering it to anyone else
    edit = client.get(f"/studies/{bobs.pk}/edit").content.decode()
    assert "Polyps" in edit


def test_the_lab_wide_flag_shows_it_to_every_researcher(client, world):
    carol = researcher("carol")
    client.force_login(world["alice"])
    response = client.post(f"/datasets/{world['dataset'].pk}/sharing", {"shared_with_lab": "on"})
    assert response.status_code == 302
    client.force_login(carol)
    assert client.get(f"/datasets/{world['dataset'].pk}/").status_code == 200
    assert "Polyps" in client.get("/datasets/").content.decode()
    assert "Polyps" in client.get("/studies/new").content.decode()
    # the flag on the data set is not the models' or the evaluation's
    assert client.get(f"/models/{world['segmenter'].pk}/").status_code == 404
    assert client.get(f"/trust/{world['evaluation'].pk}/").status_code == 404
    world["evaluation"].shared_with_lab = True
    world["evaluation"].save()
    assert client.get(f"/trust/{world['evaluation'].pk}/scores.csv").status_code == 200


def test_the_sharing_form_does_not_say_which_usernames_exist(client, world):
    researcher("dave")
    get_user_model().objects.create_user("erin", password="x" * 12, is_active=False)
    client.force_login(world["alice"])
    url = f"/datasets/{world['dataset'].pk}/sharing"
    errors = {}
    for name in ("nobody", "erin", "alice"):
        response = client.post(url, {"collaborators": f"dave {name}"})
        assert response.status_code == 400, name
        page = response.content.decode().replace(name, "NAME")
        errors[name] = re.findall(r'<ul class="errorlist".*?</ul>', page)
        assert errors[name], name
    assert errors["nobody"] == errors["erin"] == errors["alice"]
    assert not world["dataset"].collaborators.exists()  # nothing half-saved
    # staff (who see the accounts in the admin) get the reason
    world["alice"].is_staff = True
    world["alice"].save()
    page = client.post(url, {"collaborators": "dave nobody erin"}).content.decode()
    assert "no account is called nobody" in page and "the account erin is inactive" in page


def test_owners_of_new_rows(client, tmp_path, django_capture_on_commit_callbacks):
    """The uploader owns an uploaded data set; a command-line import takes --owner, else the
    first superuser; the demo's data sets and models are the demo researcher's."""
    import io
    import zipfile

    from django.core.management import call_command
    from PIL import Image

    alice = researcher("alice")
    client.force_login(alice)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, mode in (("images/a.png", "RGB"), ("masks/a.png", "L")):
            png = io.BytesIO()
            im = Image.new(mode, (16, 16))
            if mode == "L":
                im.paste(255, (2, 2, 9, 9))
            im.save(png, format="PNG")
            archive.writestr(name, png.getvalue())
    buffer.name = "upload.zip"
    buffer.seek(0)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/datasets/upload", {"name": "Uploaded", "archive": buffer})
    assert response.status_code == 302
    assert Dataset.objects.get(name="Uploaded").owner == alice

    folder_images, folder_masks = tmp_path / "images", tmp_path / "masks"
    folder_images.mkdir()
    folder_masks.mkdir()
    Image.new("RGB", (16, 16)).save(folder_images / "a.png")
    mask = Image.new("L", (16, 16))
    mask.paste(255, (2, 2, 9, 9))
    mask.save(folder_masks / "a.png")
    out = io.StringIO()
    call_command("import_images", folder_images, folder_masks, "--name", "CLI none", stdout=out)
    assert Dataset.objects.get(name="CLI none").owner is None  # no superuser yet
    assert "only superusers see it" in out.getvalue()
    root = get_user_model().objects.create_superuser("root", password="x" * 12)
    call_command("import_images", folder_images, folder_masks, "--name", "CLI root", stdout=out)
    assert Dataset.objects.get(name="CLI root").owner == root
    call_command(
        "import_images", folder_images, folder_masks, "--name", "CLI alice", "--owner", "alice",
        stdout=out,
    )  # fmt: skip
    assert Dataset.objects.get(name="CLI alice").owner == alice
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no account is called 'zed'"):
        call_command("import_images", folder_images, folder_masks, "--name", "X", "--owner", "zed")
    assert not Dataset.objects.filter(name="X").exists()


def test_command_line_tools_refuse_an_owner_who_may_not_see_the_data(world, tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="bob may not see data set"):
        call_command(
            "trust_evaluation", str(world["classifier"].pk), str(world["dataset"].pk),
            user="bob", no_progress=True,
        )  # fmt: skip
    with pytest.raises(CommandError, match="bob may not see data set 'Polyps'"):
        call_command(
            "import_pointprompt_results", str(tmp_path), "--dataset", "Polyps",
            "--model", str(world["segmenter"].pk), "--owner", "bob",
        )  # fmt: skip
    world["dataset"].collaborators.add(world["bob"])
    with pytest.raises(CommandError, match="bob may not see model alice segmenter"):
        call_command(
            "import_pointprompt_results", str(tmp_path), "--dataset", "Polyps",
            "--model", str(world["segmenter"].pk), "--owner", "bob",
        )  # fmt: skip
    assert TrustEvaluation.objects.count() == 1 and Study.objects.count() == 1
