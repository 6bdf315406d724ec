"""The ownership migration (issue 25) on a database at the schema of 0012 (the main branch before
owners): every existing data set and model spec gets an owner, the uploader where an import job
names one, else the first superuser; nothing is shared with the lab or with collaborators, so
nothing becomes visible that was not (a plain researcher sees none of it afterwards)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("studies", "0013_i24_keyboard")]
AFTER = [("studies", "0014_i25_tenancy")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_rows_get_owners_and_stay_private():
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    Dataset = old.get_model("studies", "Dataset")
    ModelSpec = old.get_model("studies", "ModelSpec")
    Job = old.get_model("studies", "Job")
    TrustEvaluation = old.get_model("studies", "TrustEvaluation")
    plain = User.objects.create(username="plain")  # made first: the lowest id, not a superuser
    root = User.objects.create(username="root", is_superuser=True, is_staff=True)
    User.objects.create(username="root2", is_superuser=True)
    uploader = User.objects.create(username="uploader")
    uploaded = Dataset.objects.create(name="uploaded")
    cli = Dataset.objects.create(name="command line", source="pointprompt")
    orphan_job = Dataset.objects.create(name="job without user")
    Job.objects.create(kind="import", dataset=uploaded, created_by=uploader)
    Job.objects.create(kind="import", dataset=orphan_job, created_by=None)
    spec = ModelSpec.objects.create(name="cnn", kind="classifier")
    evaluation = TrustEvaluation.objects.create(model=spec, dataset=cli, created_by=uploader)

    try:
        new = migrate(AFTER)
        Dataset = new.get_model("studies", "Dataset")
        ModelSpec = new.get_model("studies", "ModelSpec")
        TrustEvaluation = new.get_model("studies", "TrustEvaluation")
        owners = dict(Dataset.objects.values_list("name", "owner__username"))
        assert owners == {
            "uploaded": "uploader",
            "command line": "root",
            "job without user": "root",
        }
        assert ModelSpec.objects.get(pk=spec.pk).owner_id == root.pk
        assert TrustEvaluation.objects.get(pk=evaluation.pk).created_by_id == uploader.pk
        for model in (Dataset, ModelSpec, TrustEvaluation):
            assert not model.objects.filter(shared_with_lab=True).exists()
            assert not model.collaborators.through.objects.exists()
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    # with today's code: the plain researcher sees none of it, the owners their own
    from django.contrib.auth import get_user_model

    from studies.core.sharing import visible_datasets, visible_models

    users = get_user_model().objects
    assert not visible_datasets(users.get(pk=plain.pk)).exists()
    assert not visible_models(users.get(pk=plain.pk)).exists()
    assert list(visible_datasets(users.get(pk=uploader.pk)).values_list("name", flat=True)) == [
        "uploaded"
    ]


@pytest.mark.django_db(transaction=True)
def test_without_a_superuser_the_rows_stay_ownerless():
    old = migrate(BEFORE)
    old.get_model("auth", "User").objects.create(username="plain")
    old.get_model("studies", "Dataset").objects.create(name="nobody's")
    try:
        new = migrate(AFTER)
        assert new.get_model("studies", "Dataset").objects.get().owner_id is None
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
