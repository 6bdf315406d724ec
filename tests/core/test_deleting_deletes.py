"""Deleting deletes (issue 25): a study's or a data set's files go with its rows once the
deletion commits (studies/core/file_cleanup.py), never when it rolls back; the data set page's
"Delete this data set" says what goes, and refuses while a study uses the data set."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from studies.core import storage
from studies.models import Dataset, DatasetImage, Job, ModelSpec, TrustEvaluation
from tests.factories import classical_spec, prompting_study, researcher, small_dataset

pytestmark = pytest.mark.django_db(transaction=True)  # real commits and rollbacks


def files_under(media, *folders) -> list[str]:
    return sorted(
        str(p.relative_to(media)) for f in folders for p in (media / f).rglob("*") if p.is_file()
    )


def owned_dataset(client, owner, name="Low contrast", n=3) -> Dataset:
    """A data set imported by `owner`, with originals and thumbnails made, as the pages do."""
    dataset = small_dataset(name, n=n)
    Job.objects.create(kind="import", dataset=dataset, created_by=owner, status="done")
    client.force_login(owner)
    for row in dataset.images.all():
        row.original_image.save(f"{row.pk}.png", ContentFile(b"original bytes"), save=False)
        row.original_mask.save(f"{row.pk}_mask.png", ContentFile(b"original mask"), save=False)
        row.save()
        for what in ("image", "mask"):
            assert (
                client.get(f"/datasets/{dataset.pk}/thumbs/{row.pk}/{what}.png").status_code == 200
            )
    return dataset


def test_deleting_a_data_set_from_its_page_deletes_its_files(client, media):
    alice = researcher("alice")
    dataset = owned_dataset(client, alice)
    pk = dataset.pk
    before = files_under(media, f"datasets/{pk}", f"thumbs/{pk}")
    # 3 images x (image, mask, original image, original mask, 2 thumbnails)
    assert len(before) == 18 and any("/originals/" in f for f in before)
    assert "Delete this data set" in client.get(f"/datasets/{pk}/").content.decode()
    page = client.get(f"/datasets/{pk}/delete").content.decode()
    assert "<strong>3</strong> images" in page and "3 originals" in page
    response = client.post(f"/datasets/{pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/datasets/"
    assert not Dataset.objects.filter(pk=pk).exists()
    assert not DatasetImage.objects.filter(dataset_id=pk).exists()
    assert files_under(media, f"datasets/{pk}", f"thumbs/{pk}") == []
    assert not (media / f"datasets/{pk}").exists() and not (media / f"thumbs/{pk}").exists()


def test_only_the_owner_sees_or_uses_the_delete_action(client, media):
    alice, bob = researcher("alice"), researcher("bob")
    dataset = owned_dataset(client, alice)
    client.force_login(bob)
    assert "Delete this data set" not in client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert client.get(f"/datasets/{dataset.pk}/delete").status_code == 404
    assert client.post(f"/datasets/{dataset.pk}/delete").status_code == 404
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert len(files_under(media, f"datasets/{dataset.pk}")) == 12


def test_a_data_set_a_study_uses_is_refused_and_keeps_everything(client, media):
    alice = researcher("alice")
    dataset = owned_dataset(client, alice, name="Clean shapes")
    study = prompting_study()  # on "Clean shapes"
    assert study.dataset_id == dataset.pk
    study.owner = alice
    study.save()
    before = files_under(media, f"datasets/{dataset.pk}", f"thumbs/{dataset.pk}")
    page = client.get(f"/datasets/{dataset.pk}/delete").content.decode()
    assert "cannot be deleted while" in page and "1 study" in page and study.title in page
    assert 'id="confirm-delete"' not in page
    assert client.post(f"/datasets/{dataset.pk}/delete").status_code == 409
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert files_under(media, f"datasets/{dataset.pk}", f"thumbs/{dataset.pk}") == before


def test_nothing_is_deleted_when_the_transaction_rolls_back(client, media):
    dataset = owned_dataset(client, researcher("alice"))
    pk = dataset.pk
    before = files_under(media, f"datasets/{pk}", f"thumbs/{pk}")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            dataset.delete()
            raise RuntimeError("rolled back")
    assert Dataset.objects.filter(pk=pk).exists() and len(before) == 18
    assert files_under(media, f"datasets/{pk}", f"thumbs/{pk}") == before


def test_deleting_a_study_deletes_its_export_zips(media):
    study = prompting_study()
    pk = study.pk
    storage.put_bytes("media", f"exports/study{pk}_tidy_1.zip", b"PK zip bytes")
    Job.objects.create(
        study=study, kind="export", status="done", file=f"exports/study{pk}_tidy_1.zip"
    )
    other = Job.objects.create(kind="export", status="done", file="exports/other.zip")
    storage.put_bytes("media", "exports/other.zip", b"PK other")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            study.delete()
            raise RuntimeError("rolled back")
    assert (media / f"exports/study{pk}_tidy_1.zip").is_file()
    study = type(study).objects.get(pk=pk)  # still there: the deletion rolled back
    study.delete()  # what the admin's delete does, the cascade included
    assert not (media / f"exports/study{pk}_tidy_1.zip").exists()
    assert (media / "exports/other.zip").is_file() and Job.objects.filter(pk=other.pk).exists()


def test_deleting_a_trust_evaluation_deletes_its_plots(media):
    dataset = small_dataset()
    spec = ModelSpec.objects.create(name="clf", kind="classifier", architecture="tiny")
    evaluation = TrustEvaluation.objects.create(
        model=spec, dataset=dataset, created_by=researcher(), folder="trust/7"
    )
    for name in ("roc.png", "roc.svg", "sub/extra.csv"):
        storage.put_bytes("media", f"trust/7/{name}", b"plot")
    evaluation.delete()
    assert files_under(media, "trust/7") == []
    classical_spec()
    pk = dataset.pk
    assert files_under(media, f"datasets/{pk}")
    dataset.delete()  # no evaluation uses it any more
    assert files_under(media, f"datasets/{pk}") == []


@pytest.mark.browser
def test_the_delete_pages_in_a_browser(live_server, new_page, media):
    from django.test import Client

    from tests.browser_support import screenshot

    alice = researcher("alice")
    dataset = owned_dataset(Client(), alice)
    pk = dataset.pk
    blocked = owned_dataset(Client(), alice, name="Clean shapes")
    study = prompting_study()
    study.owner = alice
    study.save()
    sizes = {"1280x720": (1280, 720), "1920x1080": (1920, 1080), "800w": (800, 900)}
    for label, viewport in sizes.items():
        page = new_page(viewport)
        page.goto(f"{live_server.url}/studies/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "pw-alice")
        page.click("#login-submit")
        page.goto(f"{live_server.url}/datasets/{blocked.pk}/delete")
        assert page.locator("#delete-refused").is_visible()
        screenshot(page, f"dataset_delete_refused_{label}")
        page.goto(f"{live_server.url}/datasets/{pk}/")
        page.click("#delete-dataset")
        assert "3 images" in page.locator("#delete-what").inner_text()
        screenshot(page, f"dataset_delete_confirm_{label}")
    page.click("#confirm-delete")
    page.wait_for_url(f"{live_server.url}/datasets/")
    assert "deleted" in page.locator(".messages").inner_text()
    screenshot(page, "dataset_deleted_list")
    assert not Dataset.objects.filter(pk=pk).exists()
    assert files_under(media, f"datasets/{pk}", f"thumbs/{pk}") == []
