"""Parsing of API requests and rendering of caption jobs."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from captioning import registry, selectors
from captioning.models import CaptionJob, ModelVersion

MAX_BEAM_SIZE = 10
MIN_MAX_LENGTH = 5
MAX_MAX_LENGTH = 50
MAX_NUM_CAPTIONS = 5
MAX_WAIT_SECONDS = 30
MAX_BATCH_FILES = 50
# Caption languages that the model versions write. Other values are rejected, so that
# a client asking for a language gets an error rather than English.
LANGUAGES = ["en"]
# Used when a model version's config does not state its position table size.
DEFAULT_MAX_POSITIONS = 40


class CaptionJobCreateSerializer(serializers.Serializer):
    # Empty files pass here so that captioning.imaging rejects them with its own code.
    image = serializers.FileField(
        allow_empty_file=True,
        help_text="The photo: JPEG, PNG, WebP, GIF, BMP or TIFF, detected from its content.",
    )
    model_version = serializers.CharField(
        required=False,
        help_text=(
            "Pin the job to a ready model version: an id, an alias such as `candidate` "
            "(`production` is the active version), NAME:NUMBER, or a name for its newest "
            "ready version. Omit it for the active version or the canary share."
        ),
    )
    beam_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_BEAM_SIZE,
        help_text="Beams searched; omit for the model version's tuned default.",
    )
    max_length = serializers.IntegerField(
        required=False, min_value=MIN_MAX_LENGTH, max_value=MAX_MAX_LENGTH,
        help_text="Maximum words in a caption; omit for the model version's default.",
    )
    num_captions = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_NUM_CAPTIONS,
        help_text="Captions to return, best first, in `alternatives`; omit for the server's default.",
    )
    language = serializers.ChoiceField(
        choices=LANGUAGES, required=False,
        help_text="Language of the caption. The current model versions write English only.",
    )
    wait = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_WAIT_SECONDS,
        help_text=(
            "Seconds to wait for the caption. The response is 200 with the finished job "
            "when it is done in time, else 202 as without `wait`. Also read from the query string."
        ),
    )

    def validate_model_version(self, value: str) -> ModelVersion:
        version = selectors.model_version_resolve(value)
        if version is None:
            raise serializers.ValidationError(
                f"No model version matches {value!r}. GET /api/v1/models/ lists them."
            )
        if version.status != ModelVersion.Status.READY:
            raise serializers.ValidationError(
                f"Model version {version.label} is {version.status}; only ready versions "
                "caption images. GET /api/v1/models/ lists them."
            )
        return version

    def validate(self, attrs: dict) -> dict:
        beam_size, num_captions = attrs.get("beam_size"), attrs.get("num_captions")
        if beam_size is not None and num_captions is not None and num_captions > beam_size:
            # The search keeps only beam_size candidates, so it cannot return more.
            raise serializers.ValidationError({
                "num_captions": [
                    f"Ensure this value is less than or equal to beam_size ({beam_size}): the "
                    f"search keeps at most {beam_size} captions. Raise beam_size to "
                    f"{num_captions} or ask for fewer captions."
                ]
            })
        max_length = attrs.get("max_length")
        if max_length is None:
            return attrs
        version = attrs.get("model_version") or selectors.model_version_get_active()
        max_positions = DEFAULT_MAX_POSITIONS
        if version is not None:
            max_positions = int(version.config.get("max_positions", DEFAULT_MAX_POSITIONS))
        # Two positions go to the start and end tokens.
        limit = max_positions - 2
        if max_length > limit:
            raise serializers.ValidationError({
                "max_length": [
                    f"Ensure this value is less than or equal to {limit}, the longest caption "
                    "the model version can write."
                ]
            })
        return attrs


class CaptionJobOptionsSerializer(CaptionJobCreateSerializer):
    """The options of a single upload, without its image or `wait`, for a batch."""

    image = None
    wait = None


class CaptionJobFilterSerializer(serializers.Serializer):
    """Query parameters that narrow the job list; each one left out matches every job."""

    status = serializers.ChoiceField(
        choices=CaptionJob.Status.values, required=False,
        help_text="Only jobs in this status.",
    )
    model_version = serializers.CharField(
        required=False,
        help_text="Only jobs of this model version: an id, an alias, NAME:NUMBER or a name.",
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Only jobs created at or after this ISO 8601 time.",
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Only jobs created before this ISO 8601 time.",
    )


class CaptionJobPageSerializer(CaptionJobFilterSerializer):
    """The filters plus the page controls of the job list."""

    cursor = serializers.CharField(
        required=False,
        help_text="Opaque position in the list. Leave it out for the newest jobs, then "
                  "follow the `next` and `previous` links, which carry it.",
    )
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=100,
        help_text="Jobs per page, 1 to 100; 20 when left out.",
    )


class AlternativeSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="The caption.")
    log_prob = serializers.FloatField(help_text="Sum of the token log-probabilities.")
    confidence = serializers.FloatField(help_text="exp of the mean token log-probability, 0 to 1.")
    truncated = serializers.BooleanField(help_text="True when the caption hit the length limit.")


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    number = serializers.IntegerField()
    label = serializers.CharField(help_text="NAME:NUMBER, which pins this version.")


class ImageInfoSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="The stored image, served to the job's owner only.")
    original_filename = serializers.CharField()
    format = serializers.CharField(help_text="Detected from the content: JPEG, PNG, WEBP, GIF, BMP or TIFF.")
    width = serializers.IntegerField(help_text="Pixels, after EXIF orientation.")
    height = serializers.IntegerField(help_text="Pixels, after EXIF orientation.")
    byte_size = serializers.IntegerField()
    sha256 = serializers.CharField()


class TimingsSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    queue_seconds = serializers.FloatField(allow_null=True, help_text="From upload to the worker's start.")
    model_seconds = serializers.FloatField(allow_null=True, help_text="Inside the model, without loading it.")
    total_seconds = serializers.FloatField(allow_null=True, help_text="From upload to the stored result.")


class CaptionJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    alternatives = AlternativeSerializer(many=True, read_only=True)
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
            "route",
            "attempts",
            "image",
            "timings",
        ]
        extra_kwargs = {
            "route": {
                "help_text": "How the version was chosen: pinned by the request, the canary "
                "share (canary) or the active version (active).",
            },
            "attempts": {
                "help_text": "Times a worker started the job; a retry after a lost worker or a "
                "transient error adds one.",
            },
        }

    @extend_schema_field(serializers.URLField(help_text="Poll this URL for the job's state."))
    def get_url(self, job: CaptionJob) -> str:
        path = reverse("api:caption-detail", kwargs={"job_id": job.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(ModelVersionRefSerializer(allow_null=True))
    def get_model_version(self, job: CaptionJob) -> dict | None:
        if job.model_version is None:
            return None
        version = job.model_version
        return {"id": version.pk, "name": version.name, "number": version.number, "label": version.label}

    @extend_schema_field(ImageInfoSerializer)
    def get_image(self, job: CaptionJob) -> dict:
        # Unlike MEDIA_URL, the API's image URL serves only the job's owner and staff.
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

    @extend_schema_field(TimingsSerializer)
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
    label = serializers.CharField(read_only=True, help_text="NAME:NUMBER, which pins this version.")
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "number",
            "label",
            "description",
            "status",
            "is_active",
            "aliases",
            "encoder",
            "decoder",
            "parameter_count",
            "vocabulary_size",
            "scores",
            "created_at",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, version: ModelVersion) -> list[str]:
        names = [alias.name for alias in version.aliases.all()]
        if version.is_active:
            names.insert(0, registry.PRODUCTION_ALIAS)
        return names
