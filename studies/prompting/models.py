"""The prompting log: one row per participant event (a timestep when it produced a mask), and
the automated prompting baselines run on the same images."""

from __future__ import annotations

from django.db import models

from studies.core.models import Assignment, DatasetImage, Study


class PromptEvent(models.Model):
    ACTION_CHOICES = [
        ("add", "add"),
        ("remove", "remove"),
        ("clear", "clear"),
        ("undo", "undo"),
        ("redo", "redo"),
        ("finish", "finish"),
    ]
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    client_event_id = models.CharField(max_length=100)
    action = models.CharField(max_length=10, choices=ACTION_CHOICES)
    mode = models.CharField(max_length=10, blank=True)
    x = models.FloatField(null=True, blank=True)
    y = models.FloatField(null=True, blank=True)
    client_ts = models.FloatField(
        null=True, blank=True, help_text="client clock, ms since the epoch"
    )
    server_ts = models.DateTimeField()
    # Set when the event produced a prediction (a timestep).
    timestep = models.PositiveIntegerField(null=True, blank=True)
    round = models.PositiveSmallIntegerField(help_text="1-based round the event happened in")
    green = models.JSONField(default=list)
    red = models.JSONField(default=list)
    mask_rle = models.JSONField(null=True, blank=True)
    iou = models.FloatField(null=True, blank=True)
    predicted_iou = models.FloatField(null=True, blank=True)
    mask_index = models.PositiveSmallIntegerField(null=True, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    stagnation = models.PositiveIntegerField(default=1)
    round_ended = models.BooleanField(default=False)
    finished = models.BooleanField(default=False)
    stop_reason = models.CharField(max_length=20, blank=True)
    low_res_logits = models.BinaryField(
        null=True, blank=True, help_text="npy float16, only when chaining"
    )
    response = models.JSONField(default=dict, help_text="the answer sent, replayed on retries")
    # What the participant saw before the server's answer, when the browser decoded a preview
    # (docs/browser_decoder.md); the server's mask above stays the record.
    shown_mask_sha256 = models.CharField(
        max_length=64, null=True, blank=True, help_text="sha256 of the mask the browser displayed"
    )
    shown_iou_vs_server = models.FloatField(
        null=True, blank=True, help_text="IoU of the displayed mask vs the server's, server-side"
    )
    client_latency_ms = models.FloatField(
        null=True, blank=True, help_text="browser: click -> local mask drawn"
    )
    # Which input placed or removed the point (docs/workspace.md "Keys"): "pointer" (mouse,
    # touch, pen) or "keyboard" (the keyboard cursor); "" when the client did not say.
    input = models.CharField(max_length=10, blank=True, default="")

    class Meta:
        ordering = ["assignment", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "seq"], name="unique_event_seq"),
            models.UniqueConstraint(
                fields=["assignment", "client_event_id"], name="unique_event_client_id"
            ),
        ]
        indexes = [models.Index(fields=["assignment", "timestep"])]


class BaselineResult(models.Model):
    """One automated prompt (docs/design.md "Automated prompting baselines"): one shot, seeded.

    `count_source` says where the point counts came from: `human_best` (the counts of one
    assignment's best timestep; `assignment` is set) or `fixed` (the same counts for every image);
    for PointPrompt's released strategies also `point_nums` (the released table), `human_mean`
    (the study's mean best-timestep counts) and `one_point` (1 + 1). `n_green` / `n_red` are the
    counts asked; `green` / `red` the points placed (entropy and max_dist as released also keep
    their random initial point: one more of each).
    """

    COUNT_SOURCES = [
        ("human_best", "Human best timestep"),
        ("fixed", "Fixed count"),
        ("point_nums", "PointPrompt's released table"),
        ("human_mean", "Mean of the human best-timestep counts"),
        ("one_point", "1 + 1 (released _1pt mode)"),
    ]
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="baselines")
    image = models.ForeignKey(DatasetImage, on_delete=models.CASCADE, related_name="baselines")
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.CASCADE, related_name="baselines"
    )
    strategy = models.CharField(max_length=30)
    seed = models.IntegerField(default=0)
    count_source = models.CharField(max_length=20, choices=COUNT_SOURCES)
    key = models.CharField(
        max_length=200, help_text="strategy:seed:count_source:unit, unique per study"
    )
    n_green = models.PositiveIntegerField()
    n_red = models.PositiveIntegerField()
    green = models.JSONField(default=list)
    red = models.JSONField(default=list)
    iou = models.FloatField()
    predicted_iou = models.FloatField(null=True, blank=True)
    mask_index = models.PositiveSmallIntegerField(null=True, blank=True)
    mask_rle = models.JSONField(null=True, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "strategy", "image", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="unique_baseline_key"),
        ]


class AnalysisResult(models.Model):
    """A prompting study's analysis, computed once by a background job and stored
    (studies/prompting/analysis_store.py): the page, its plots and CSVs read it.

    `version` says which data it was computed from (the study's last event id and count, the
    exclusions, the baselines, the data set, the format); `payload` and `cache` are
    zlib-compressed JSON (NaN allowed): the tables (overall and per arm) and, for the
    incremental update, the per-assignment figures and timestep scores and the intervals."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="analysis_result")
    version = models.JSONField(default=dict)
    computed_at = models.DateTimeField()
    assignments = models.PositiveIntegerField(default=0, help_text="assignments in the result")
    recomputed = models.PositiveIntegerField(
        default=0, help_text="assignments the last update recomputed (the rest were kept)"
    )
    seconds = models.FloatField(default=0.0, help_text="the last update's time")
    tables = models.BinaryField(help_text="zlib JSON: every table but the per-assignment one")
    assignment_rows = models.BinaryField(help_text="zlib JSON: the per-assignment table(s)")
    cache = models.BinaryField(help_text="zlib JSON: per-assignment units and intervals")
