"""Trust evaluations: a researcher's background job that scores every image of a labelled data
set with every trust score of one classifier (`interventions.trust`), and the per-image rows it
writes. A researcher tool, not a study kind: no participants, no study."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from studies.core.models import Dataset, DatasetImage, ModelSpec


class TrustEvaluation(models.Model):
    """One (classifier, data set) evaluation. The worker (workers/trust_tasks.py) moves it
    queued -> running -> done | failed, writes `TrustScoreRow`s a batch at a time, then the
    `summary` (accuracy; per score AUROC, AUPR, direction, definition) and the plots under
    MEDIA_ROOT/`folder`. Rerunning an unfinished one scores only the images without a row."""

    STATUS_CHOICES = [
        ("queued", "Queued"),
        ("running", "Running"),
        ("done", "Done"),
        ("failed", "Failed"),
    ]
    model = models.ForeignKey(
        ModelSpec,
        on_delete=models.PROTECT,
        related_name="trust_evaluations",
        limit_choices_to={"kind": "classifier"},
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="trust_evaluations")
    # the owner (studies.core.sharing: owner, collaborators, the lab-wide flag, superusers)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trust_evaluations"
    )
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="shared_trust_evaluations"
    )
    shared_with_lab = models.BooleanField(
        default=False, help_text="every signed-in researcher may see it"
    )
    params = models.JSONField(default=dict, blank=True, help_text="batch_size, mcd_seed")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="queued")
    progress = models.FloatField(default=0.0, help_text="0..1")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    folder = models.CharField(
        max_length=200, blank=True, help_text="plots, relative to MEDIA_ROOT (set when written)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"trust evaluation {self.pk} ({self.status})"


class TrustScoreRow(models.Model):
    """Every trust score of one image under one evaluation (`scores`: name -> float, the keys of
    `interventions.trust_names.TRUST_SCORE_NAMES`)."""

    evaluation = models.ForeignKey(TrustEvaluation, on_delete=models.CASCADE, related_name="rows")
    image = models.ForeignKey(DatasetImage, on_delete=models.PROTECT, related_name="+")
    label = models.IntegerField()
    prediction = models.IntegerField()
    correct = models.BooleanField()
    scores = models.JSONField(default=dict)

    class Meta:
        ordering = ["evaluation", "image__index"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "image"], name="unique_trust_row_image"),
        ]
