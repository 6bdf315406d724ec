"""The shared domain model: data sets, model specs, studies, participants, assignments, jobs.

Kind-specific logs live beside their kind (`studies/prompting/models.py`,
`studies/intervention/models.py`); all are models of the one `studies` app and keep their
tables (`studies_<model>`).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def image_upload_path(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/images/{filename}"


def mask_upload_path(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/masks/{filename}"


def original_upload_path(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset_id}/originals/{filename}"


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
    # Who may see it (studies.core.sharing): the owner, the collaborators, everyone signed in
    # when shared with the lab, and superusers. No owner (its account gone, or no one to give
    # it to when the ownership migration ran): superusers only.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owned_datasets",
    )
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="shared_datasets"
    )
    shared_with_lab = models.BooleanField(
        default=False, help_text="every signed-in researcher may see and use it"
    )

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
    # Where an imported image came from (docs/researchers.md "Bringing your own data"). `image`
    # and `mask` are the working copy every study shows and computes on (longest side at most
    # IMPORT_MAX_SIDE); `width` / `height` are its size. An import keeps the uploaded files.
    original_name = models.CharField(
        max_length=255, blank=True, help_text="the image's file name as uploaded ('' if none)"
    )
    mask_name = models.CharField(
        max_length=255, blank=True, help_text="the mask's file name as uploaded ('' if none)"
    )
    original_image = models.FileField(upload_to=original_upload_path, blank=True)
    original_mask = models.FileField(upload_to=original_upload_path, blank=True)
    original_width = models.PositiveIntegerField(
        null=True, blank=True, help_text="width of the original as viewers show it, if scaled"
    )
    original_height = models.PositiveIntegerField(
        null=True, blank=True, help_text="height of the original as viewers show it, if scaled"
    )
    scale = models.FloatField(
        default=1.0, help_text="working copy long side / original long side (1: not scaled)"
    )
    import_notes = models.JSONField(
        default=dict, blank=True, help_text="what the import did: orientation, window, mask"
    )

    class Meta:
        ordering = ["dataset", "index"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "index"], name="unique_image_index"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}[{self.index}]"

    @property
    def size_words(self) -> str:
        """The size as every page writes it: width x height with the unit (and the original's)."""
        words = f"{self.width} x {self.height} pixels"
        if self.original_width and self.original_height:
            words += f" (original {self.original_width} x {self.original_height})"
        return words

    @property
    def display_name(self) -> str:
        return self.original_name or f"#{self.index}"


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
    # as for Dataset (studies.core.sharing)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owned_models",
    )
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="shared_models"
    )
    shared_with_lab = models.BooleanField(
        default=False, help_text="every signed-in researcher may see and use it"
    )

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
    """A new study's protocol: empty, so its kind's defaults apply (`Study.option`)."""
    return {}


class Study(models.Model):
    STATUS_CHOICES = [("draft", "Draft"), ("open", "Open"), ("closed", "Closed")]

    kind = models.CharField(
        max_length=20, default="prompting", help_text="a registered study kind (core/kinds.py)"
    )
    title = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    consent_text = models.TextField(blank=True, default="I agree to take part in this study.")
    consent_version = models.CharField(max_length=50, default="1")
    survey_question = models.TextField(
        blank=True, default="", help_text="empty = the study kind's question (names no model)"
    )
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
    max_participants = models.PositiveIntegerField(
        default=1000,
        help_text="public and crowd links enrol no one past this many participants (0 = no limit)",
    )
    completion_code = models.CharField(max_length=100, blank=True)
    completion_url = models.URLField(blank=True)
    attention_images = models.JSONField(
        default=list,
        blank=True,
        help_text="indices of easy images with a known answer, given to every participant",
    )
    attention_threshold = models.FloatField(
        default=0.5, help_text="an attention check fails below this IoU (see docs/researchers.md)"
    )
    # The experimental design (studies/core/design.py, docs/experiments.md): arms, assignment
    # method, seed, block size. Empty: one arm, the study's own protocol and model.
    design = models.JSONField(default=dict, blank=True)
    # A researcher's preview of one arm (studies/core/preview.py): a throwaway copy of the
    # study with that arm's protocol and model; never listed, counted, analysed or exported.
    preview_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="previews"
    )
    imported_from = models.CharField(
        max_length=500,
        blank=True,
        help_text="set: imported human results (read-only: no one joins, it never opens); "
        "where they came from",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"

    @property
    def is_imported(self) -> bool:
        """Imported human results (e.g. the released PointPrompt data): read-only, closed for
        good, no participant can join (docs/pointprompt.md)."""
        return bool(self.imported_from)

    @property
    def kind_spec(self):
        """This study's kind (studies/core/kinds.py): options, pages, services."""
        from studies.core.kinds import kind_of

        return kind_of(self)

    def save(self, *args, **kwargs):
        if not self.survey_question:  # a new study asks its kind's question
            self.survey_question = self.kind_spec.survey_question
        super().save(*args, **kwargs)

    def option(self, name: str):
        """A protocol option of the study's kind, falling back to the kind's default."""
        if name in self.protocol:
            return self.protocol[name]
        option = self.kind_spec.options.get(name)
        return option.default if option is not None else None

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
    excluded = models.BooleanField(
        default=False, help_text="left out of the analysis (kept, and flagged in exports)"
    )
    excluded_reason = models.CharField(max_length=200, blank=True)
    arm = models.CharField(
        max_length=60, blank=True, help_text="the arm of a between-participants design (at consent)"
    )

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


class AssignmentQuerySet(models.QuerySet):
    def real(self):
        """The study's own assignments: a practice assignment (Assignment.practice) is not part
        of the study's data (no coverage, progress, analysis or export counts it)."""
        return self.filter(practice=False)


class Assignment(models.Model):
    STATUS_CHOICES = [("pending", "Pending"), ("active", "Active"), ("finished", "Finished")]
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="assignments"
    )
    image = models.ForeignKey(DatasetImage, on_delete=models.PROTECT, related_name="assignments")
    order = models.PositiveIntegerField()
    practice = models.BooleanField(
        default=False,
        help_text="the practice image before the real ones (order 0, first); not study data",
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="pending")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=20, blank=True)
    arm = models.CharField(
        max_length=60,
        blank=True,
        help_text="the design arm this image runs in ('' without a design)",
    )
    survey_answers = models.JSONField(null=True, blank=True)
    # The protocol engine's state after the last event (derivable from the log; kept for speed).
    state = models.JSONField(default=dict, blank=True)
    next_seq = models.PositiveIntegerField(default=0)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        # the practice assignment (order 0 too) comes before the real ones (order 0..n-1)
        ordering = ["participant", "-practice", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "image"],
                condition=models.Q(practice=False),
                name="unique_assignment_image",
            ),
            models.UniqueConstraint(
                fields=["participant", "order"],
                condition=models.Q(practice=False),
                name="unique_assignment_order",
            ),
            models.UniqueConstraint(
                fields=["participant"],
                condition=models.Q(practice=True),
                name="one_practice_assignment",
            ),
        ]

    def __str__(self) -> str:
        if self.practice:
            return f"{self.participant} practice {self.image}"
        return f"{self.participant} #{self.order} {self.image}"


class Allocation(models.Model):
    """One line of a study's randomisation log: which arm a consenting participant got, from
    which block and slot of the seeded sequence (studies/core/design.py)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="allocations")
    participant = models.OneToOneField(
        Participant, on_delete=models.CASCADE, related_name="allocation"
    )
    sequence = models.PositiveIntegerField(help_text="consent order among allocated, 1-based")
    arm = models.CharField(
        max_length=60, help_text="the arm (between); the first arm of the order (within)"
    )
    block = models.PositiveIntegerField(
        help_text="the block (between) or Latin-square row (within)"
    )
    slot = models.PositiveIntegerField(help_text="the slot of the block sequence used (between)")
    arm_order = models.JSONField(default=list, blank=True, help_text="within: the arms in order")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "sequence"], name="unique_allocation_sequence"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} -> {self.arm}"


class Job(models.Model):
    """A background job with progress: an export, a precompute, a baseline run, ...

    One row per job, whatever it does: `kind` says what, `params` how, `file` holds what it
    wrote (exports). Workers move it queued -> running -> done | failed (workers/jobs.py)."""

    STATUS_CHOICES = [
        ("queued", "Queued"),
        ("running", "Running"),
        ("done", "Done"),
        ("failed", "Failed"),
    ]
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="jobs", null=True, blank=True
    )
    dataset = models.ForeignKey(
        Dataset,
        on_delete=models.SET_NULL,
        related_name="jobs",
        null=True,
        blank=True,
        help_text="the data set an import job created (import jobs have no study)",
    )
    kind = models.CharField(max_length=30, help_text="export / precompute / baseline / import")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="queued")
    progress = models.FloatField(default=0.0, help_text="0..1")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="exports/", blank=True)
    error = models.TextField(blank=True)
    report = models.JSONField(
        default=dict, blank=True, help_text="an import's report: pairs accepted and refused"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def format(self) -> str:
        """An export job's format (pointprompt / tidy / coco)."""
        return self.params.get("format", "")

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"
