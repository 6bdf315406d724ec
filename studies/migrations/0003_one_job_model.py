"""One job model: ExportJob becomes Job (its table is renamed, so export ids stay valid), gains
BackgroundJob's fields, and every BackgroundJob row is copied into it; then BackgroundJob goes.
Study.kind loses its fixed choices (the kind registry checks it). Nothing else changes on disk:
the models that moved into studies/core, studies/prompting and studies/intervention keep their
app label and tables."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

JOB_FIELDS = ("kind", "params", "status", "progress", "total", "done", "error", "finished_at")


def merge_jobs(apps, schema_editor):
    Job = apps.get_model("studies", "Job")
    BackgroundJob = apps.get_model("studies", "BackgroundJob")
    for job in Job.objects.all():
        job.kind, job.params = "export", {"format": job.format}
        job.done = job.total = 1 if job.status == "done" else 0
        job.save(update_fields=["kind", "params", "done", "total"])
    for old in BackgroundJob.objects.order_by("pk"):
        new = Job.objects.create(study_id=old.study_id, **{f: getattr(old, f) for f in JOB_FIELDS})
        # keep the original creation time (auto_now_add set it to now)
        Job.objects.filter(pk=new.pk).update(created_at=old.created_at)


def split_jobs(apps, schema_editor):
    Job = apps.get_model("studies", "Job")
    BackgroundJob = apps.get_model("studies", "BackgroundJob")
    for job in Job.objects.exclude(kind="export"):
        old = BackgroundJob.objects.create(
            study_id=job.study_id, **{f: getattr(job, f) for f in JOB_FIELDS}
        )
        BackgroundJob.objects.filter(pk=old.pk).update(created_at=job.created_at)
        job.delete()
    for job in Job.objects.all():
        job.format = job.params.get("format", "")
        job.save(update_fields=["format"])


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0002_baselines"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="study",
            name="kind",
            field=models.CharField(
                default="prompting",
                help_text="a registered study kind (core/kinds.py)",
                max_length=20,
            ),
        ),
        migrations.RenameModel(old_name="ExportJob", new_name="Job"),
        migrations.AddField(
            model_name="job",
            name="kind",
            field=models.CharField(
                default="export", help_text="export / precompute / baseline / ...", max_length=30
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="job", name="params", field=models.JSONField(blank=True, default=dict)
        ),
        migrations.AddField(
            model_name="job", name="total", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="job", name="done", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AlterField(
            model_name="job",
            name="progress",
            field=models.FloatField(default=0.0, help_text="0..1"),
        ),
        migrations.RunPython(merge_jobs, split_jobs),
        migrations.RemoveField(model_name="job", name="format"),
        migrations.DeleteModel(name="BackgroundJob"),
        migrations.AlterField(
            model_name="job",
            name="study",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="jobs",
                to="studies.study",
            ),
        ),
    ]
