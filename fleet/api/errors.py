"""The one error contract: {"error": <code>, "message": <text>, "fields": {<field>: [..]}}.

Every error the API can produce goes through `error_response`: DRF exceptions via
`exception_handler`, everything Django answers itself (unknown routes, CSRF, oversized bodies,
crashes) via fleet.api.middleware.
"""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from fleet.errors import DomainError

logger = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
MESSAGES = {
    400: "The request is invalid.",
    401: "Authentication credentials were not provided or are invalid.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Not acceptable.",
    409: "Conflict.",
    411: "Content-Length required.",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
    500: "Internal server error.",
    503: "Service unavailable.",
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = MESSAGES[409]
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = MESSAGES[413]
    default_code = "payload_too_large"


def error_body(status_code, message=None, fields=None):
    return {
        "error": CODES.get(status_code, "bad_request" if status_code < 500 else "internal_error"),
        "message": message or MESSAGES.get(status_code, "Error."),
        "fields": fields or {},
    }


def error_response(status_code, message=None, fields=None, headers=None):
    response = JsonResponse(error_body(status_code, message, fields), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else str(key)


def flatten(detail, prefix=""):
    """Turn DRF's nested error detail into {"a.b.0": ["message", ...]}."""
    if isinstance(detail, dict):
        fields = {}
        for key, value in detail.items():
            fields.update(flatten(value, prefix if key == "non_field_errors" else _join(prefix, key)))
        return fields
    if isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        fields = {}
        for index, item in enumerate(detail):
            fields.update(flatten(item, _join(prefix, index)))
        return fields
    items = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(item) for item in items]}


def _validation_message(fields):
    if not fields:
        return MESSAGES[400]
    name, messages = next(iter(fields.items()))
    if name == "non_field_errors":
        return messages[0]
    return f"{name}: {messages[0]}"


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return _response(exc.status, exc.message, exc.fields)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if not isinstance(exc, exceptions.APIException):
        return None  # unexpected: the middleware logs it and answers 500 without internals

    headers = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten(exc.detail)
        return _response(400, _validation_message(fields), fields)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        request = context.get("request")
        authenticator = getattr(request, "authenticators", None)
        header = authenticator[0].authenticate_header(request) if authenticator else None
        headers["WWW-Authenticate"] = header or "Bearer"
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.Throttled):
        headers["Retry-After"] = str(max(1, int(exc.wait or 1)))
        return _response(429, MESSAGES[429], headers=headers)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return _response(405, str(exc.detail))
    detail = exc.detail
    if isinstance(detail, dict):  # e.g. simplejwt's {"detail": ..., "code": ...}
        detail = detail.get("detail", MESSAGES.get(exc.status_code))
    if isinstance(detail, list):
        detail = detail[0] if detail else None
    return _response(exc.status_code, str(detail) if detail else None, headers=headers)


def _response(status_code, message, fields=None, headers=None):
    # An error answer must not commit what the request wrote before failing (ATOMIC_REQUESTS).
    set_rollback()
    return Response(error_body(status_code, message, fields), status=status_code, headers=headers)


class ErrorSerializer(serializers.Serializer):
    """Documents the error body in the OpenAPI schema."""

    error = serializers.ChoiceField(choices=sorted(set(CODES.values())))
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
