"""OpenAPI descriptions that the views cannot show by themselves: the error shape,
its codes, and the error responses with examples.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_CODES = {
    "invalid": "A field or query parameter is missing or out of range; details names each field.",
    "empty_file": "The uploaded file is empty.",
    "image_too_large": "The file is over MAX_UPLOAD_BYTES.",
    "unsupported_format": "The content is not JPEG, PNG, WebP, GIF, BMP or TIFF.",
    "too_many_pixels": "Width times height is over MAX_IMAGE_PIXELS, read from the header.",
    "image_too_small": "A side is under MIN_IMAGE_SIDE pixels.",
    "image_corrupt": "The image is truncated or corrupt and does not decode.",
    "too_many_files": "A batch has more than 50 files.",
    "too_many_fields": "The request has more fields or files than Django accepts.",
    "not_authenticated": "No API key was sent.",
    "authentication_failed": "The API key is unknown.",
    "permission_denied": "A browser session sent no CSRF token.",
    "not_found": "Unknown job id, another user's job, a missing stored image, or an unknown path.",
    "method_not_allowed": "The endpoint does not take this HTTP method.",
    "job_running": "The job cannot be deleted while a worker captions it.",
    "request_too_large": "The body or its text fields are over a limit.",
    "throttled": "Over the request rate; wait Retry-After seconds.",
    "internal_error": "A bug in the service.",
    "unavailable": "The database, the broker or every worker is down.",
}


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=list(ERROR_CODES),
        help_text="Stable machine-readable code: "
        + " ".join(f"`{code}`: {meaning}" for code, meaning in ERROR_CODES.items()),
    )
    message = serializers.CharField(help_text="What went wrong, the limit, and what to do next.")
    details = serializers.DictField(help_text="The values behind the message, such as the limit.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


def error_response(description: str, code: str, message: str, details: dict | None = None) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                code,
                value={"error": {"code": code, "message": message, "details": details or {}}},
                response_only=True,
            )
        ],
    )


UNAUTHENTICATED = error_response(
    "No API key, or an unknown one.",
    "not_authenticated",
    "Authentication credentials were not provided.",
)
NOT_FOUND = error_response(
    "Unknown job id, or another user's job.",
    "not_found",
    "No caption job has the id 7f9f0582-0c1d-4f6a-9d44-1d0b0c2f1a11.",
)
THROTTLED = error_response(
    "Over the request rate. The Retry-After header gives the seconds to wait.",
    "throttled",
    "Request was throttled. Expected available in 12 seconds.",
    {"retry_after_seconds": 12},
)
INVALID = error_response(
    "An invalid option, or an image that cannot be captioned.",
    "too_many_pixels",
    "The image is 15000x15000 (225,000,000 pixels), and the limit is 40,000,000 pixels "
    "(40 megapixels). Scale the image down and upload it again.",
    {"width": 15000, "height": 15000, "max_pixels": 40000000},
)
TOO_LARGE = error_response(
    "The body or its text fields are over a limit.",
    "request_too_large",
    "The request body is 150,000,000 bytes, and the limit is 104,857,600 bytes. "
    "Send fewer or smaller files per request.",
)
JOB_RUNNING = error_response(
    "A worker is captioning the job.",
    "job_running",
    "Caption job 7f9f0582-0c1d-4f6a-9d44-1d0b0c2f1a11 is running; delete it once it has "
    "finished. Poll the job until its status is succeeded or failed.",
    {"status": "running"},
)
UNAVAILABLE = error_response(
    "A check failed; details has every check.",
    "unavailable",
    "The service is unavailable because these checks failed: workers.",
    {"database": {"ok": True}, "broker": {"ok": True}, "workers": {"ok": False, "workers": 0}},
)

HEALTH_OK = inline_serializer(
    "Health",
    fields={
        "status": serializers.CharField(help_text="`ok`."),
        "checks": serializers.DictField(help_text="`database`, `broker` and `workers`, each with `ok`."),
    },
)
