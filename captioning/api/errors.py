"""One error shape for the whole API: {"error": {"code", "message", "details"}}."""

import logging
import math
import sys

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from captioning.imaging import ImageRejected

logger = logging.getLogger(__name__)


def error_response(*, code: str, message: str, details=None, status_code: int) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return Response(body, status=status_code)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class LengthRequired(exceptions.APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_code = "length_required"


def request_size_check(request) -> None:
    """Raise RequestTooLarge when the declared body is over API_MAX_REQUEST_BYTES.

    Raises LengthRequired for a chunked body without Content-Length, because Django
    reads only as many bytes as Content-Length declares. Such an upload would
    otherwise arrive empty and be reported as a missing file.
    """
    transfer_encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if "chunked" in transfer_encoding and not request.META.get("CONTENT_LENGTH"):
        raise LengthRequired(
            "The request body is chunked (Transfer-Encoding: chunked) and has no "
            "Content-Length header, which this API requires. Send the file with a "
            "Content-Length, as curl -F and most HTTP clients do for files."
        )

    limit = settings.API_MAX_REQUEST_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise RequestTooLarge(
            f"The request body is {length:,} bytes, and the limit is {limit:,} bytes. "
            "Send fewer or smaller files per request."
        )


def exception_handler(exc, context):
    """Render every error the API raises in the one shape; let others become 500s."""
    if isinstance(exc, RequestDataTooBig):
        # Django raises this when the body, not counting uploaded files, is over
        # DATA_UPLOAD_MAX_MEMORY_SIZE: base64 text in a form field, for example.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            code="request_too_large",
            message=(
                f"The request's form fields or body, not counting files, are over {limit:,} "
                "bytes. Send the image as a file in the field `image`, not as text."
            ),
            details={"max_field_bytes": limit},
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return error_response(
            code="too_many_fields",
            message=f"{exc} Send fewer fields or files per request.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
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
        headers["Retry-After"] = str(math.ceil(exc.wait))
    if isinstance(exc.detail, (dict, list)):
        # Field errors from a serializer: the message sums them up, details lists them.
        message = "The request is invalid; see details for each field."
        details = exc.detail
    else:
        message = str(exc.detail)
        details = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after_seconds": math.ceil(exc.wait)}
    response = error_response(
        code=exc.default_code if isinstance(exc.detail, (dict, list)) else exc.get_codes(),
        message=message,
        details=details,
        status_code=exc.status_code,
    )
    for name, value in headers.items():
        response[name] = value
    return response


# Django's handlers for errors outside any API view: unknown routes and crashes.
# Paths under /api/ get the API's error shape, the pages keep the site's HTML.


def api_path(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    if not api_path(request):
        return defaults.page_not_found(request, exception)
    body = {
        "error": {
            "code": "not_found",
            "message": f"No API endpoint has the path {request.path}. /api/docs/ lists the endpoints.",
            "details": {},
        }
    }
    return JsonResponse(body, status=404)


def server_error(request):
    """Render a crash; a database that is down gets 503 with Retry-After instead of 500.

    Django calls this while it handles the exception, so sys.exc_info() names it.
    """
    error = sys.exc_info()[1]
    if isinstance(error, (OperationalError, InterfaceError)):
        return database_unavailable(request, error)
    if not api_path(request):
        return defaults.server_error(request)
    body = {
        "error": {
            "code": "internal_error",
            "message": "The server failed with an internal error. Try again later; if it persists, tell the operators.",
            "details": {},
        }
    }
    return JsonResponse(body, status=500)


# Seconds a client is asked to wait when the database is down.
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable(request, error: Exception) -> HttpResponse:
    logger.warning(
        "Responding to %s %s with 503 because the database is unavailable: %s", request.method, request.path, error
    )
    if api_path(request):
        body = {
            "error": {
                "code": "database_unavailable",
                "message": (
                    "The database is unavailable, so this request was not stored. "
                    f"Retry in {DATABASE_RETRY_AFTER_SECONDS} seconds."
                ),
                "details": {},
            }
        }
        response = JsonResponse(body, status=503)
    else:
        response = HttpResponse(loader.render_to_string("503.html"), status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response
