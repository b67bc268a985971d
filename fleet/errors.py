"""Domain errors raised by services; the API turns them into the common error body, the admin into messages."""


class DomainError(Exception):
    code = "bad_request"
    status = 400

    def __init__(self, message, *, fields=None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Invalid(DomainError):
    """Input that passed the serializer but breaks a domain rule; name the field."""

    def __init__(self, message, *, field=None, fields=None):
        super().__init__(message, fields=fields or ({field: [message]} if field else None))


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
