"""`Authorization: Bearer dk_…` device tokens: a device authenticates only as itself."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from fleet.api.authentication import INVALID_CREDENTIALS, Principal, bearer_token

from . import services
from .models import DeviceToken


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    """Two statements: the credential function (organization made current) and one select of
    token + device + organization. Views that write anyway (the heartbeat) set
    `defers_device_token_touch = True` and fold the token's last-used time into their own UPDATE."""

    prefix = DeviceToken.PREFIX

    def authenticate(self, request):
        secret = bearer_token(request)
        if secret is None or not secret.startswith(self.prefix):
            return None
        token = services.device_token_authenticate(secret=secret)
        if token is None:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if not getattr(view, "defers_device_token_touch", False):
            services.device_token_touch(token=token)
        device = token.device
        principal = Principal(
            kind="device",
            organization=token.organization,
            role=None,
            credential_id=str(device.id),
            label=device.device_id,
            device=device,
            extra={"device_token": token},
            rate_key=services.device_token_rate_key(secret_hash=token.secret_hash),
        )
        return AnonymousUser(), principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "devices.authentication.DeviceTokenAuthentication"
    name = "DeviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "dk_…",
            "description": "Device token returned once as `api_key` by POST /api/v1/devices/register: "
            "`Authorization: Bearer dk_…`. A device may only address itself.",
        }
