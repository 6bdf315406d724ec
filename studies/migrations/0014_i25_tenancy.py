"""Owners for data sets and model specs, collaborators and a lab-wide flag for them and for
trust evaluations (whose owner stays `created_by`).

Existing rows get an owner and nothing becomes visible that was not: a data set is owned by the
researcher whose upload (import job) created it, else by the first superuser (command-line
imports and the demo's generated data sets had no recorded creator); a model spec by the first
superuser. No row is shared with the lab or with collaborators. With no superuser at all the
owner stays empty, which only superusers can see (docs/researchers.md "Who sees what").
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def give_owners(apps, schema_editor):
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Dataset = apps.get_model("studies", "Dataset")
    ModelSpec = apps.get_model("studies", "ModelSpec")
    Job = apps.get_model("studies", "Job")
    first_superuser = User.objects.filter(is_superuser=True).order_by("pk").first()
    uploaders = {}
    for job in (
        Job.objects.filter(kind="import", dataset__isnull=False, created_by__isnull=False)
        .order_by("created_at", "pk")
        .only("dataset_id", "created_by_id")
    ):
        uploaders.setdefault(job.dataset_id, job.created_by_id)
    for dataset in Dataset.objects.filter(owner__isnull=True).only("pk"):
        owner_id = uploaders.get(dataset.pk) or (first_superuser.pk if first_superuser else None)
        if owner_id is not None:
            Dataset.objects.filter(pk=dataset.pk).update(owner_id=owner_id)
    if first_superuser is not None:
        ModelSpec.objects.filter(owner__isnull=True).update(owner_id=first_superuser.pk)


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0013_i24_keyboard"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="collaborators",
            field=models.ManyToManyField(
                blank=True, related_name="shared_datasets", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddField(
            model_name="dataset",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="owned_datasets",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="dataset",
            name="shared_with_lab",
            field=models.BooleanField(
                default=False, help_text="every signed-in researcher may see and use it"
            ),
        ),
        migrations.AddField(
            model_name="modelspec",
            name="collaborators",
            field=models.ManyToManyField(
                blank=True, related_name="shared_models", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddField(
            model_name="modelspec",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="owned_models",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="modelspec",
            name="shared_with_lab",
            field=models.BooleanField(
                default=False, help_text="every signed-in researcher may see and use it"
            ),
        ),
        migrations.AddField(
            model_name="trustevaluation",
            name="collaborators",
            field=models.ManyToManyField(
                blank=True, related_name="shared_trust_evaluations", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddField(
            model_name="trustevaluation",
            name="shared_with_lab",
            field=models.BooleanField(
                default=False, help_text="every signed-in researcher may see it"
            ),
        ),
        migrations.RunPython(give_owners, migrations.RunPython.noop),
    ]
