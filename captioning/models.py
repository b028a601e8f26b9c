"""The record of every model version and every caption job.

State changes go through captioning.services; reads through captioning.selectors.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ModelVersion(models.Model):
    """A trained checkpoint that workers can load, at most one of them active."""

    name = models.CharField(max_length=100, unique=True)
    # Relative paths are resolved against settings.CHECKPOINT_ROOT.
    checkpoint = models.CharField(max_length=500)
    config = models.JSONField(default=dict, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Services keep exactly one version active; the database guarantees that
            # no race can leave two.
            models.UniqueConstraint(
                fields=["is_active"],
                condition=models.Q(is_active=True),
                name="captioning_single_active_model_version",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CaptionJob(models.Model):
    """One uploaded image and what became of it."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

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

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent inside the model's caption call, without loading it.
    model_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The API lists one user's jobs newest first, a page at a time.
            models.Index(fields=["user", "-created_at"], name="captioning_job_user_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

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
