"""One error shape for the whole API: {"error": {"code", "message", "details"}}."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from captioning.imaging import ImageRejected

logger = logging.getLogger(__name__)


def error_response(*, code: str, message: str, details=None, status_code: int) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return Response(body, status=status_code)


def exception_handler(exc, context):
    """Render every error the API raises in the one shape; let others become 500s."""
    if isinstance(exc, ImageRejected):
        set_rollback()
        return error_response(
            code=exc.code,
            message=exc.message,
            details=exc.details,
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None

    set_rollback()
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc.detail, (dict, list)):
        # Field errors from a serializer: the message sums them up, details lists them.
        message = "The request is invalid; see details for each field."
        details = exc.detail
    else:
        message = str(exc.detail)
        details = {}
    response = error_response(
        code=exc.default_code if isinstance(exc.detail, (dict, list)) else exc.get_codes(),
        message=message,
        details=details,
        status_code=exc.status_code,
    )
    for name, value in headers.items():
        response[name] = value
    return response
