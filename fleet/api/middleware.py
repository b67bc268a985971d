"""Keeps the error contract for what Django answers outside DRF under /api/, and resets the
organization context after every request (the database setting ends with the transaction)."""

import json
import logging

from django.conf import settings

from fleet.api.errors import MESSAGES, error_response
from fleet.tenancy import rls

logger = logging.getLogger("fleet.api")

KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


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
        headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
        return error_response(status_code, message, headers=headers)


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
