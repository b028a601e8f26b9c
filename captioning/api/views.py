"""REST endpoints for caption jobs. They parse, call a service or selector, and render."""

import logging

from django.conf import settings
from rest_framework import exceptions, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from captioning import selectors, services
from captioning.api.serializers import CaptionJobCreateSerializer, CaptionJobSerializer

logger = logging.getLogger(__name__)


class CaptionPermission(permissions.BasePermission):
    """Let in authenticated callers, and anonymous ones while API_ALLOW_ANONYMOUS is on."""

    def has_permission(self, request, view) -> bool:
        return settings.API_ALLOW_ANONYMOUS or bool(request.user and request.user.is_authenticated)


class CaptionJobCreateView(APIView):
    """POST an image as multipart field `image`; the response is 202 with the job's URL."""

    permission_classes = [CaptionPermission]

    def post(self, request: Request) -> Response:
        serializer = CaptionJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["image"]

        job = services.job_create(
            upload=upload,
            original_filename=upload.name or "",
            user=request.user,
            beam_size=serializer.validated_data.get("beam_size"),
            max_length=serializer.validated_data.get("max_length"),
        )

        body = CaptionJobSerializer(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class CaptionJobDetailView(APIView):
    """GET a job's status, and its caption once a worker has written one.

    Another user's job returns 404 like an unknown id, so ids cannot be probed.
    """

    permission_classes = [CaptionPermission]

    def get(self, request: Request, job_id) -> Response:
        job = selectors.job_get_visible(job_id=job_id, user=request.user)
        if job is None:
            raise exceptions.NotFound(f"No caption job has the id {job_id}.")
        return Response(CaptionJobSerializer(job, context={"request": request}).data)
