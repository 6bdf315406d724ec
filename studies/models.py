"""The domain model of DESIGN.md: datasets, models, studies, participants, assignments, logs."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from .protocol import DEFAULT_PROTOCOL


def image_upload_path(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/images/{filename}"


def mask_upload_path(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/masks/{filename}"


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(
        max_length=50, default="upload", help_text="generated / pointprompt / upload"
    )
    seed = models.IntegerField(
        null=True, blank=True, help_text="Generator seed for generated data sets"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class DatasetImage(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField(help_text="0..N-1 within the dataset, used by exports")
    image = models.FileField(upload_to=image_upload_path)
    mask = models.FileField(upload_to=mask_upload_path, help_text="ground truth, PNG 0/255")
    class_label = models.IntegerField(null=True, blank=True)
    class_name = models.CharField(max_length=100, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["dataset", "index"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "index"], name="unique_image_index"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}[{self.index}]"


class ModelSpec(models.Model):
    KIND_CHOICES = [
        ("sam", "SAM"),
        ("classical", "Classical point-seeded"),
        ("classifier", "Classifier"),
    ]
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    architecture = models.CharField(
        max_length=100,
        blank=True,
        help_text="vit_h / vit_l / vit_b, a torchvision name, torchscript, demo",
    )
    weights_path = models.CharField(max_length=500, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    class_names = models.JSONField(default=list, blank=True)
    input_size = models.PositiveIntegerField(null=True, blank=True)
    mean = models.JSONField(default=list, blank=True)
    std = models.JSONField(default=list, blank=True)
    target_layer = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def model_id(self) -> str:
        """Stable identifier written with every timestep: kind, architecture, weights hash.

        The same string the loaded backend reports (`classical-v1`, `sam-vit_b-<sha12>`), so
        the manifest's model and the log's `model_id` column can be matched."""
        if self.kind == "classical":
            return self.architecture or "classical-v1"
        parts = [self.kind]
        if self.architecture:
            parts.append(self.architecture)
        if self.weights_sha256:
            parts.append(self.weights_sha256[:12])
        return "-".join(parts)

    def __str__(self) -> str:
        return f"{self.name} ({self.model_id})"


def default_protocol() -> dict:
    return dict(DEFAULT_PROTOCOL)


class Study(models.Model):
    KIND_CHOICES = [("prompting", "Prompting"), ("intervention", "Intervention")]
    STATUS_CHOICES = [("draft", "Draft"), ("open", "Open"), ("closed", "Closed")]
    DEFAULT_SURVEY = "Do you think the ground truth mask was suboptimal, i.e. are SAM's results qualitatively better?"

    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default="prompting")
    title = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    consent_text = models.TextField(blank=True, default="I agree to take part in this study.")
    consent_version = models.CharField(max_length=50, default="1")
    survey_question = models.TextField(blank=True, default=DEFAULT_SURVEY)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="studies")
    model = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="studies")
    protocol = models.JSONField(default=default_protocol)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="draft")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_studies"
    )
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="shared_studies"
    )
    annotators_per_image = models.PositiveIntegerField(default=1)
    images_per_participant = models.PositiveIntegerField(
        null=True, blank=True, help_text="empty = every image of the dataset"
    )
    assignment_seed = models.IntegerField(default=0)
    allow_public_join = models.BooleanField(default=True)
    completion_code = models.CharField(max_length=100, blank=True)
    completion_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"

    def option(self, name: str):
        """A protocol option, falling back to the default."""
        return self.protocol.get(name, DEFAULT_PROTOCOL.get(name))

    def __str__(self) -> str:
        return self.title


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Participant(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    number = models.PositiveIntegerField(help_text="enrolment order, 1-based")
    code = models.CharField(max_length=20, help_text="pseudonymous code st<number>")
    token = models.CharField(max_length=64, unique=True, default=new_token)
    prolific_pid = models.CharField(max_length=100, blank=True)
    external_study_id = models.CharField(max_length=100, blank=True)
    external_session_id = models.CharField(max_length=100, blank=True)
    consent_version = models.CharField(max_length=50, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "number"], name="unique_participant_number"),
            models.UniqueConstraint(fields=["study", "code"], name="unique_participant_code"),
        ]

    @property
    def consented(self) -> bool:
        return self.consented_at is not None

    def __str__(self) -> str:
        return f"{self.study_id}:{self.code}"


class Assignment(models.Model):
    STATUS_CHOICES = [("pending", "Pending"), ("active", "Active"), ("finished", "Finished")]
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="assignments"
    )
    image = models.ForeignKey(DatasetImage, on_delete=models.PROTECT, related_name="assignments")
    order = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="pending")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=20, blank=True)
    survey_answers = models.JSONField(null=True, blank=True)
    # The protocol engine's state after the last event (derivable from the log; kept for speed).
    state = models.JSONField(default=dict, blank=True)
    next_seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["participant", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "image"], name="unique_assignment_image"
            ),
            models.UniqueConstraint(
                fields=["participant", "order"], name="unique_assignment_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} #{self.order} {self.image}"


class PromptEvent(models.Model):
    ACTION_CHOICES = [
        ("add", "add"),
        ("remove", "remove"),
        ("clear", "clear"),
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

    class Meta:
        ordering = ["assignment", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "seq"], name="unique_event_seq"),
            models.UniqueConstraint(
                fields=["assignment", "client_event_id"], name="unique_event_client_id"
            ),
        ]
        indexes = [models.Index(fields=["assignment", "timestep"])]


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


class BackgroundJob(models.Model):
    """A batch job with progress: an export, an embedding precompute, a baseline run, ..."""

    STATUS_CHOICES = [
        ("queued", "Queued"),
        ("running", "Running"),
        ("done", "Done"),
        ("failed", "Failed"),
    ]
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=30, help_text="export / precompute / analysis / baseline")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="queued")
    progress = models.FloatField(default=0.0, help_text="0..1")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class ExportJob(models.Model):
    FORMAT_CHOICES = [("pointprompt", "PointPrompt"), ("tidy", "Tidy tables"), ("coco", "COCO")]
    STATUS_CHOICES = BackgroundJob.STATUS_CHOICES
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=20, choices=FORMAT_CHOICES)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="queued")
    progress = models.FloatField(default=0.0)
    file = models.FileField(upload_to="exports/", blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


# --- Automated prompting baselines (issue 4: exports and the overprompting analysis) ---------


class BaselineResult(models.Model):
    """One automated prompt (DESIGN.md "Automated prompting baselines"): one shot, seeded.

    `count_source` says where the point counts came from: `human_best` (the counts of one
    assignment's best timestep; `assignment` is set) or `fixed` (the same counts for every image).
    """

    COUNT_SOURCES = [("human_best", "Human best timestep"), ("fixed", "Fixed count")]
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
