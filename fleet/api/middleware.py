"""Keeps the error contract for what Django answers outside DRF under /api/, and resets the
organization context after every request (the database setting ends with the transaction)."""

import json
import logging

from django.conf import settings

from fleet.api.errors import MESSAGES, error_response
from fleet.tenancy import rls

logger = logging.getLogger("fleet.api")

# Headers of a replaced answer that describe its old body; every other header (Allow, Retry-After,
# WWW-Authenticate, X-Frame-Options set by inner middleware, Vary…) is kept.
DROPPED_HEADERS = {"content-type", "content-length", "content-disposition", "content-encoding", "etag", "last-modified"}


def is_api(request):
    return request.path.startswith("/api/")


def _content_length(request):
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api(request) and _content_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return error_response(413, f"The request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
        # PostgreSQL cannot compare text with NUL: refuse it before any lookup or filter sees it
        # (in a path no resource can match it: 404; in a query string: 400).
        if is_api(request) and "\x00" in request.path:
            return error_response(404, "No such resource.")
        if is_api(request) and _has_nul(request):
            return error_response(400, "The query string contains a NUL character.")
        if is_api(request) and _is_chunked(request):
            # Under WSGI Django reads no body without Content-Length: the view would see an empty body
            # and could accept a request whose data never arrived. Refuse it instead.
            return error_response(411, "Send the body with a Content-Length header (chunked bodies are not accepted).")
        try:
            response = self.get_response(request)
        finally:
            rls.deactivate_context()
        if is_api(request) and response.status_code >= 400 and not _is_json(response):
            response = self._as_error(response)
        return response

    def process_exception(self, request, exception):
        if not is_api(request):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500)

    @staticmethod
    def _as_error(response):
        status_code = response.status_code
        message = MESSAGES.get(status_code)
        if status_code == 404:
            message = "No such resource."
        headers = {name: value for name, value in response.items() if name.lower() not in DROPPED_HEADERS}
        return error_response(status_code, message, headers=headers)


def _has_nul(request):
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


def _is_chunked(request):
    if request.META.get("CONTENT_LENGTH") not in (None, ""):
        return False
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def _is_json(response):
    if not response.get("Content-Type", "").startswith("application/json"):
        return False
    if getattr(response, "streaming", False):
        return True
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body
