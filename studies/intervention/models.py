"""The intervention log (one row per applied trial) and the per-image analyses (explanations,
VOICE, causal curves) computed when a study opens."""

from __future__ import annotations

from django.db import models

from studies.core.models import Assignment, DatasetImage, ModelSpec


class InterventionTrial(models.Model):
    OPERATION_CHOICES = [("delete", "delete"), ("insert", "insert")]
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="trials")
    seq = models.PositiveIntegerField()
    client_event_id = models.CharField(max_length=100)
    operation = models.CharField(max_length=10, choices=OPERATION_CHOICES)
    region_rle = models.JSONField()
    substrate = models.CharField(max_length=10)
    overlay = models.CharField(max_length=20, blank=True, help_text="experimental condition shown")
    target_class = models.IntegerField(null=True, blank=True)
    prob_before = models.FloatField(null=True, blank=True)
    prob_after = models.FloatField(null=True, blank=True)
    top5_before = models.JSONField(default=list)
    top5_after = models.JSONField(default=list)
    flipped = models.BooleanField(default=False)
    area_fraction = models.FloatField(null=True, blank=True)
    gradcam_iou = models.FloatField(null=True, blank=True)
    voice_overlap = models.FloatField(null=True, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    client_ts = models.FloatField(null=True, blank=True)
    server_ts = models.DateTimeField()
    response = models.JSONField(default=dict)
    # Which input painted the applied region: "pointer", "keyboard" or "mixed" (both);
    # "" when the client did not say (a region restored after a reload, older clients).
    input = models.CharField(max_length=10, blank=True, default="")

    class Meta:
        ordering = ["assignment", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "seq"], name="unique_trial_seq"),
            models.UniqueConstraint(
                fields=["assignment", "client_event_id"], name="unique_trial_client_id"
            ),
        ]


class ImageAnalysis(models.Model):
    image = models.ForeignKey(DatasetImage, on_delete=models.CASCADE, related_name="analyses")
    model = models.ForeignKey(ModelSpec, on_delete=models.CASCADE, related_name="analyses")
    method = models.CharField(max_length=50)
    maps = models.FileField(upload_to="analyses/", blank=True, help_text=".npz of named maps")
    stats = models.JSONField(default=dict)
    params = models.JSONField(default=dict)
    code_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model", "method"], name="unique_image_analysis"
            ),
        ]
