"""REST endpoints for caption jobs. They parse, call a service or selector, and render."""

import logging

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from captioning import health, imaging, selectors, services
from captioning.api import schema
from captioning.api.errors import error_response, request_size_check
from captioning.api.serializers import (
    MAX_BATCH_FILES,
    CaptionJobCreateSerializer,
    CaptionJobOptionsSerializer,
    CaptionJobPageSerializer,
    CaptionJobSerializer,
    ModelVersionSerializer,
)

logger = logging.getLogger(__name__)


class ApiView(APIView):
    """An APIView that rejects bodies over API_MAX_REQUEST_BYTES before parsing them."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        request_size_check(request)
        super().initial(request, *args, **kwargs)


class CaptionPermission(permissions.BasePermission):
    """Let in authenticated callers, and anonymous ones while API_ALLOW_ANONYMOUS is on."""

    def has_permission(self, request, view) -> bool:
        return settings.API_ALLOW_ANONYMOUS or bool(request.user and request.user.is_authenticated)


def job_create_with_options(*, upload, user, options: dict):
    """Create a job from an uploaded file and the validated caption options."""
    return services.job_create(
        upload=upload,
        original_filename=upload.name or "",
        user=user,
        model_version=options.get("model_version"),
        beam_size=options.get("beam_size"),
        max_length=options.get("max_length"),
        num_captions=options.get("num_captions"),
    )


class CaptionJobPagination(CursorPagination):
    """Newest first, by an opaque cursor, so that no page runs a COUNT(*)."""

    ordering = "-created_at"
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class CaptionJobListView(ApiView):
    """GET the caller's jobs, newest first; POST an image to create a job.

    Creating a job returns 202 with the job, and its URL in `Location`.
    """

    permission_classes = [CaptionPermission]

    @extend_schema(
        # drf-spectacular names both GETs under /api/v1/captions/ "v1_captions_retrieve".
        operation_id="v1_captions_list",
        summary="List your jobs",
        parameters=[CaptionJobPageSerializer],
        responses={
            200: inline_serializer(
                "CaptionJobPage",
                fields={
                    "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
                    "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
                    "results": CaptionJobSerializer(many=True),
                },
            ),
            400: schema.INVALID,
            401: schema.UNAUTHENTICATED,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request) -> Response:
        # Anonymous jobs belong to no one, so listing them would show every
        # anonymous caller's uploads.
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("Listing jobs requires an API key.")
        query = CaptionJobPageSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        filters.pop("cursor", None)
        filters.pop("page_size", None)
        jobs = selectors.job_list_filter(jobs=selectors.job_list_visible(user=request.user), **filters)

        paginator = CaptionJobPagination()
        try:
            page = paginator.paginate_queryset(jobs, request, view=self)
        except exceptions.NotFound:
            # DRF returns 404 for a cursor it cannot decode. The list exists, so the
            # request is what is invalid.
            raise exceptions.ValidationError({"cursor": [
                "Invalid cursor. Leave `cursor` out to start from the newest jobs, or "
                "follow a `next` or `previous` link as it is."
            ]}) from None
        body = CaptionJobSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(body)

    @extend_schema(
        summary="Caption one image",
        request={"multipart/form-data": CaptionJobCreateSerializer},
        parameters=[
            OpenApiParameter(
                "wait", OpenApiTypes.INT, OpenApiParameter.QUERY,
                description="Seconds to wait for the caption, 0 to 30, as the form field `wait`.",
            )
        ],
        responses={
            200: OpenApiResponse(CaptionJobSerializer, description="The job finished within `wait`."),
            202: OpenApiResponse(CaptionJobSerializer, description="The job is queued; poll its `url`."),
            400: schema.INVALID,
            401: schema.UNAUTHENTICATED,
            413: schema.TOO_LARGE,
            429: schema.THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data
        files = request.FILES.getlist("image")
        if len(files) > 1:
            # The serializer would take the last file and drop the others unseen.
            return error_response(
                code="too_many_files",
                message=(
                    f"The field `image` has {len(files)} files, and this endpoint takes one. "
                    "POST several files as `images` to /api/v1/captions/batch/."
                ),
                details={"files": len(files), "max_files": 1},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        if "wait" in request.query_params and "wait" not in data:
            # A shallow dict keeps the uploaded file objects as they are.
            fields = data.dict() if hasattr(data, "dict") else dict(data)
            data = {**fields, "wait": request.query_params["wait"]}
        serializer = CaptionJobCreateSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        options = serializer.validated_data
        upload = options["image"]

        job = job_create_with_options(upload=upload, user=request.user, options=options)
        if options.get("wait"):
            job = services.job_wait(job=job, timeout_seconds=options["wait"])

        body = CaptionJobSerializer(job, context={"request": request}).data
        response_status = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
        return Response(body, status=response_status, headers={"Location": body["url"]})


class CaptionJobBatchView(ApiView):
    """POST up to 50 files as repeated multipart field `images`, one job per good file.

    Each file is checked on its own, so a bad file fails only its own entry. The
    response is 207 with one result per file, in upload order: the job, or the error.
    The other fields are the options of a single upload and apply to every file.
    """

    permission_classes = [CaptionPermission]

    @extend_schema(
        summary="Caption up to 50 images",
        request={
            "multipart/form-data": inline_serializer(
                "CaptionBatchRequest",
                fields={
                    "images": serializers.ListField(
                        child=serializers.FileField(), help_text="Up to 50 files, one field each."
                    ),
                    **CaptionJobOptionsSerializer().get_fields(),
                },
            )
        },
        responses={
            207: inline_serializer(
                "CaptionBatch",
                fields={
                    "accepted": serializers.IntegerField(),
                    "rejected": serializers.IntegerField(),
                    "results": inline_serializer(
                        "CaptionBatchItem",
                        fields={
                            "index": serializers.IntegerField(help_text="Position of the file in the request."),
                            "filename": serializers.CharField(),
                            "status": serializers.IntegerField(help_text="202 with `job`, or 400 with `error`."),
                            "job": CaptionJobSerializer(required=False),
                            "error": schema.ErrorBodySerializer(required=False),
                        },
                        many=True,
                    ),
                },
            ),
            400: schema.INVALID,
            401: schema.UNAUTHENTICATED,
            413: schema.TOO_LARGE,
            429: schema.THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        files = request.FILES.getlist("images")
        if not files:
            raise exceptions.ValidationError({"images": ["Send at least one file in the field `images`."]})
        if len(files) > MAX_BATCH_FILES:
            return error_response(
                code="too_many_files",
                message=(
                    f"The batch has {len(files)} files, and the limit is {MAX_BATCH_FILES}. "
                    "Split it into several requests."
                ),
                details={"files": len(files), "max_files": MAX_BATCH_FILES},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        serializer = CaptionJobOptionsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        options = serializer.validated_data

        results = []
        for index, upload in enumerate(files):
            try:
                job = job_create_with_options(upload=upload, user=request.user, options=options)
            except imaging.ImageRejected as error:
                logger.info("Rejected batch file %d (%r): %s", index, upload.name, error.code)
                error_body = {"code": error.code, "message": error.message, "details": error.details}
                results.append({"index": index, "filename": upload.name, "status": 400, "error": error_body})
                continue
            job_body = CaptionJobSerializer(job, context={"request": request}).data
            results.append({"index": index, "filename": upload.name, "status": 202, "job": job_body})

        accepted = sum(1 for result in results if result["status"] == 202)
        body = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        return Response(body, status=status.HTTP_207_MULTI_STATUS)


class CaptionJobDetailView(ApiView):
    """GET a job's status, and its caption once a worker has written one.

    Another user's job returns 404 like an unknown id, so ids cannot be probed.
    """

    permission_classes = [CaptionPermission]

    @extend_schema(
        summary="Read a job",
        responses={200: CaptionJobSerializer, 401: schema.UNAUTHENTICATED, 404: schema.NOT_FOUND, 429: schema.THROTTLED},
    )
    def get(self, request: Request, job_id) -> Response:
        job = self.job_get(request, job_id)
        return Response(CaptionJobSerializer(job, context={"request": request}).data)

    @extend_schema(
        summary="Delete a job and its image",
        responses={
            204: OpenApiResponse(description="Deleted."),
            401: schema.UNAUTHENTICATED,
            404: schema.NOT_FOUND,
            409: schema.JOB_RUNNING,
            429: schema.THROTTLED,
        },
    )
    def delete(self, request: Request, job_id) -> Response:
        """Delete the job and its stored image, or return 409 while a worker captions it."""
        job = self.job_get(request, job_id)
        try:
            services.job_delete(job=job)
        except services.JobRunning as error:
            return error_response(
                code="job_running",
                message=f"{error} Poll the job until its status is succeeded or failed.",
                details={"status": job.status},
                status_code=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def job_get(self, request: Request, job_id):
        job = selectors.job_get_visible(job_id=job_id, user=request.user)
        if job is None:
            raise exceptions.NotFound(f"No caption job has the id {job_id}.")
        return job


class CaptionJobImageView(ApiView):
    """GET a job's stored upload, to its owner and staff only.

    The content type is the format that the upload checks detected, and nosniff
    stops a browser from guessing another one.
    """

    permission_classes = [CaptionPermission]

    @extend_schema(
        summary="Download a job's image",
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored upload."),
            401: schema.UNAUTHENTICATED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, job_id) -> FileResponse:
        job = selectors.job_get_visible(job_id=job_id, user=request.user)
        if job is None:
            raise exceptions.NotFound(f"No caption job has the id {job_id}.")
        extension, content_type = imaging.ACCEPTED_FORMATS[job.format]
        try:
            file = job.image.open("rb")
        except FileNotFoundError:
            logger.warning("Image of caption job %s is missing from storage", job.pk)
            raise exceptions.NotFound(
                f"The image of caption job {job_id} is no longer stored. Upload it again."
            ) from None

        response = FileResponse(file, content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{job.pk}.{extension}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=86400"
        return response


class ModelVersionListView(ApiView):
    """GET every model version, newest first, with its scores and whether it is active."""

    permission_classes = [CaptionPermission]

    @extend_schema(
        summary="List model versions",
        responses={
            200: inline_serializer("ModelVersionList", fields={"results": ModelVersionSerializer(many=True)}),
            401: schema.UNAUTHENTICATED,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request) -> Response:
        versions = selectors.model_version_list()
        return Response({"results": ModelVersionSerializer(versions, many=True).data})


class HealthView(ApiView):
    """GET whether the database, the broker and at least one worker respond.

    200 when all three do, else 503 in the error shape with every check in details.
    Open to anonymous callers, so load balancers and orchestrators can use it.
    """

    permission_classes = [permissions.AllowAny]
    authentication_classes = []
    # Probes poll often and from one address, so they are not throttled.
    throttle_classes = []

    @extend_schema(
        summary="Check the service",
        responses={200: schema.HEALTH_OK, 503: schema.UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        checks = health.checks_run()
        failed = [name for name, check in checks.items() if not check["ok"]]
        if failed:
            return error_response(
                code="unavailable",
                message=f"The service is unavailable because these checks failed: {', '.join(failed)}.",
                details=checks,
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "ok", "checks": checks})
