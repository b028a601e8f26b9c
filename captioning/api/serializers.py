"""Parsing of API requests and rendering of caption jobs."""

from django.urls import reverse
from rest_framework import serializers

from captioning import selectors
from captioning.models import CaptionJob, ModelVersion

MAX_BEAM_SIZE = 10
# Used when a model version's config does not state its position table size.
DEFAULT_MAX_POSITIONS = 40


class CaptionJobCreateSerializer(serializers.Serializer):
    # Empty files pass here so that captioning.imaging rejects them with its own code.
    image = serializers.FileField(allow_empty_file=True)
    beam_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_BEAM_SIZE,
        help_text="Beams searched; omit for the model version's tuned default.",
    )
    max_length = serializers.IntegerField(
        required=False, min_value=1,
        help_text="Most words in a caption; omit for the model version's default.",
    )

    def validate_max_length(self, value: int) -> int:
        version = selectors.model_version_get_active()
        max_positions = DEFAULT_MAX_POSITIONS
        if version is not None:
            max_positions = int(version.config.get("max_positions", DEFAULT_MAX_POSITIONS))
        # Two positions go to the start and end tokens.
        limit = max_positions - 2
        if value > limit:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {limit}, the longest caption "
                "the active model can write."
            )
        return value


class CaptionJobFilterSerializer(serializers.Serializer):
    """Query parameters that narrow the job list; each one left out matches every job."""

    status = serializers.ChoiceField(
        choices=CaptionJob.Status.values, required=False,
        help_text="Only jobs in this status.",
    )
    model_version = serializers.CharField(
        required=False,
        help_text="Only jobs of this model version, given by id or by name.",
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Only jobs created at or after this ISO 8601 time.",
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Only jobs created before this ISO 8601 time.",
    )


class CaptionJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model_version = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()

    class Meta:
        model = CaptionJob
        fields = [
            "id",
            "url",
            "status",
            "caption",
            "alternatives",
            "truncated",
            "error_message",
            "model_version",
            "image",
            "timings",
        ]

    def get_url(self, job: CaptionJob) -> str:
        path = reverse("api:caption-detail", kwargs={"job_id": job.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_model_version(self, job: CaptionJob) -> dict | None:
        if job.model_version is None:
            return None
        return {"id": job.model_version.pk, "name": job.model_version.name}

    def get_image(self, job: CaptionJob) -> dict:
        # The API's image URL serves only the job's owner, unlike MEDIA_URL.
        request = self.context.get("request")
        url = reverse("api:caption-image", kwargs={"job_id": job.id})
        return {
            "url": request.build_absolute_uri(url) if request else url,
            "original_filename": job.original_filename,
            "format": job.format,
            "width": job.width,
            "height": job.height,
            "byte_size": job.byte_size,
            "sha256": job.sha256,
        }

    def get_timings(self, job: CaptionJob) -> dict:
        return {
            "created_at": serializers.DateTimeField().to_representation(job.created_at),
            "started_at": serializers.DateTimeField().to_representation(job.started_at)
            if job.started_at
            else None,
            "finished_at": serializers.DateTimeField().to_representation(job.finished_at)
            if job.finished_at
            else None,
            "queue_seconds": job.queue_seconds,
            "model_seconds": job.model_seconds,
            "total_seconds": job.total_seconds,
        }


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "is_active", "scores", "created_at"]
