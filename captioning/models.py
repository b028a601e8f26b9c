"""The record of every model version and every caption job.

State changes go through captioning.services; reads through captioning.selectors.
"""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


model_version_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    _("Use letters, digits, dots, hyphens and underscores, starting with a letter or digit."),
)
alias_name_validator = RegexValidator(
    r"^[a-z][a-z0-9-]*$",
    _("Use lower-case letters, digits and hyphens, starting with a letter."),
)


class ModelVersion(models.Model):
    """A registered checkpoint. Versions of one name are numbered 1, 2, 3...

    A version is validated before it may caption anything, and at most one version is
    active: the one that unpinned jobs use.
    """

    class Status(models.TextChoices):
        VALIDATING = "validating", _("Validating")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")
        RETIRED = "retired", _("Retired")

    name = models.CharField(max_length=100, validators=[model_version_name_validator])
    number = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)

    # Relative paths are resolved against settings.CHECKPOINT_ROOT.
    checkpoint = models.CharField(max_length=500)
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    checkpoint_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    # Architecture, read from the checkpoint when it is validated.
    encoder = models.CharField(max_length=50, blank=True)
    decoder = models.CharField(max_length=50, blank=True)
    parameter_count = models.PositiveBigIntegerField(null=True, blank=True)
    vocabulary_size = models.PositiveIntegerField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # The checkpoint's training record: data, epochs, seed, arguments, history.
    training = models.JSONField(default=dict, blank=True)
    # Scores per dataset name: {"flickr8k-test": {"bleu4": 0.18, "cider": 0.44, ...}}.
    scores = models.JSONField(default=dict, blank=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.VALIDATING, db_index=True
    )
    # Progress while validating, the reason when failed.
    status_message = models.TextField(blank=True)
    # The caption of the smoke test photo, written when validation succeeds.
    smoke_caption = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)

    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "number"], name="captioning_model_version_name_number"
            ),
            # Services keep exactly one version active; the database guarantees that
            # no race can leave two.
            models.UniqueConstraint(
                fields=["is_active"],
                condition=models.Q(is_active=True),
                name="captioning_single_active_model_version",
            ),
            # Only a validated version may serve.
            models.CheckConstraint(
                condition=models.Q(is_active=False) | models.Q(status="ready"),
                name="captioning_active_model_version_ready",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """The name and number, as in "flickr:3": how people refer to one version."""
        return f"{self.name}:{self.number}"


class ModelAlias(models.Model):
    """A movable name such as "candidate" that points at one model version.

    "production" is not stored: it always means the active version.
    """

    name = models.CharField(max_length=50, unique=True, validators=[alias_name_validator])
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="aliases"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("model alias")
        verbose_name_plural = _("model aliases")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {self.model_version.label}"


class ModelActivation(models.Model):
    """One change of the active version; rollback reads the newest row."""

    class Reason(models.TextChoices):
        ACTIVATE = "activate", _("Activated")
        ROLLBACK = "rollback", _("Rolled back")

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="activations"
    )
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=10, choices=Reason.choices)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set when a rollback undid this activation, so the next rollback goes further back.
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("activation")
        verbose_name_plural = _("activations")
        ordering = ["-activated_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: {self.model_version.label}"


class Rollout(models.Model):
    """The one row of traffic settings: the share of unpinned jobs sent to the canary."""

    SINGLETON_ID = 1

    canary_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("rollout")
        verbose_name_plural = _("rollouts")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(canary_percent__lte=100), name="captioning_canary_percent_range"
            ),
        ]

    def __str__(self) -> str:
        return f"canary {self.canary_percent}%"


class Evaluation(models.Model):
    """Scoring one model version on a captioned dataset that the server can read."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Format(models.TextChoices):
        COCO_JSON = "coco-json", _("COCO captions JSON")
        CAPTIONS_CSV = "captions-csv", _("CSV with image,caption")

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    # The key of the scores in ModelVersion.scores, such as "flickr8k-test".
    dataset_name = models.CharField(max_length=100)
    format = models.CharField(max_length=12, choices=Format.choices)
    # Paths relative to settings.DATASET_ROOT, or absolute paths inside it.
    annotations = models.CharField(max_length=500)
    images_dir = models.CharField(max_length=500)
    limit = models.PositiveIntegerField(null=True, blank=True)
    # With select_every N, only every N-th image in name order is scored, starting at
    # select_offset: the split that ml.train --exclude-every N held out. 0 scores all.
    select_every = models.PositiveSmallIntegerField(default=0)
    select_offset = models.PositiveSmallIntegerField(default=0)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    images_done = models.PositiveIntegerField(default=0)
    images_total = models.PositiveIntegerField(null=True, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    # The first images with their caption and references: [{"image", "caption", "references"}].
    samples = models.JSONField(default=list, blank=True)
    error_message = models.TextField(blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("evaluation")
        verbose_name_plural = _("evaluations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model_version.label} on {self.dataset_name} ({self.status})"


class CaptionBatch(models.Model):
    """The photos of one upload from the web page, shown and exported together."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="caption_batches",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Files of this upload that were rejected before becoming jobs, in arrival order:
    # [{"filename", "code", "message"}]. They appear on the batch page and in exports.
    rejected = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("caption batch")
        verbose_name_plural = _("caption batches")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.id)


class CaptionJob(models.Model):
    """One uploaded image and what became of it."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Route(models.TextChoices):
        PINNED = "pinned", _("Pinned by the request")
        CANARY = "canary", _("Canary share")
        ACTIVE = "active", _("Active version")

    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="caption_jobs",
    )

    # The upload, stored under a generated name such as uploads/<uuid>.png.
    image = models.FileField(upload_to="uploads/", max_length=200)
    original_filename = models.CharField(max_length=255, blank=True)
    byte_size = models.PositiveBigIntegerField()
    # Pillow's format name as detected from the content: JPEG, PNG, WEBP, GIF, BMP, TIFF.
    format = models.CharField(max_length=10)
    # Size after EXIF orientation, as the photo is displayed.
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)

    # Generation options; None means the model version's tuned default.
    beam_size = models.PositiveSmallIntegerField(null=True, blank=True)
    max_length = models.PositiveSmallIntegerField(null=True, blank=True)
    # Captions to store, the best one included; None means settings.CAPTION_ALTERNATIVES.
    num_captions = models.PositiveSmallIntegerField(null=True, blank=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    caption = models.TextField(blank=True)
    # The best captions, best first: [{"text", "log_prob", "confidence", "truncated"}].
    alternatives = models.JSONField(default=list, blank=True)
    # True when the model hit its maximum length before ending the caption.
    truncated = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    # The version asked for at upload, or the one that captioned the image.
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )

    # How the version was chosen: pinned by the request, the canary share, or the active one.
    route = models.CharField(max_length=10, choices=Route.choices, blank=True)

    # The web upload the job came with; None for API uploads and older jobs.
    batch = models.ForeignKey(
        CaptionBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # A person's correction of `caption`, which stays as the model wrote it. Blank
    # means uncorrected; pages and exports show the correction when there is one.
    corrected_caption = models.TextField(blank=True)
    corrected_at = models.DateTimeField(null=True, blank=True)

    # Times a worker started the job; a lost worker or a transient error costs one.
    attempts = models.PositiveSmallIntegerField(default=0)
    # The Celery task id and retry number of the run that holds the job while it is
    # running. A result is stored only by the run that still holds it, so a duplicate
    # delivery or a run that the sweep gave up on never writes twice.
    run_token = models.CharField(max_length=80, blank=True)
    # When the job was last sent to the broker; the sweep sends long-queued jobs again.
    enqueued_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent inside the model's caption call, without loading it.
    model_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        verbose_name = _("caption job")
        verbose_name_plural = _("caption jobs")
        ordering = ["-created_at"]
        indexes = [
            # The API lists one user's jobs newest first, a page at a time.
            models.Index(fields=["user", "-created_at"], name="captioning_job_user_created"),
            # Production figures read one version's jobs over a period.
            models.Index(fields=["model_version", "created_at"], name="captioning_job_version_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def display_caption(self) -> str:
        """The caption people see and export: the correction, else the model's caption."""
        return self.corrected_caption or self.caption

    @property
    def queue_seconds(self) -> float | None:
        """Seconds between upload and the moment a worker started the job."""
        if self.started_at is None:
            return None
        return (self.started_at - self.created_at).total_seconds()

    @property
    def total_seconds(self) -> float | None:
        """Seconds between upload and the stored result."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created_at).total_seconds()
