"""App keys: publishable `pk_live_…` keys (SDKs in apps) and server-side secret `ak_live_…` keys.

Both resolve to their app's organization. A principal of kind "publishable_key" or "app_key" is
accepted only by views that list that kind in `principal_kinds` (everything else answers 403);
keys of an archived app, revoked and unknown keys answer 401 with the common message.
"""

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from apps_catalog.models import AppKey, AppKeyKind
from apps_catalog.services import app_key_authenticate
from fleet.api.authentication import INVALID_CREDENTIALS, Principal, bearer_token


class _AppKeyAuthenticationBase(authentication.BaseAuthentication):
    key_kind = None
    principal_kind = None

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None or not token.startswith(AppKey.PREFIXES[self.key_kind][:3]):
            return None
        app_key = app_key_authenticate(secret=token, kind=self.key_kind)
        if app_key is None:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        principal = Principal(
            kind=self.principal_kind,
            organization=app_key.organization,
            role=None,
            credential_id=str(app_key.id),
            label=app_key.app.slug,
            extra={"app": app_key.app, "app_key": app_key},
        )
        return AnonymousUser(), principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class PublishableKeyAuthentication(_AppKeyAuthenticationBase):
    """`Authorization: Bearer pk_live_…`: may only register devices and report routing telemetry."""

    key_kind = AppKeyKind.PUBLISHABLE
    principal_kind = "publishable_key"


class AppKeyAuthentication(_AppKeyAuthenticationBase):
    """`Authorization: Bearer ak_live_…`: an app's server-side key, limited to its own app's config."""

    key_kind = AppKeyKind.SECRET
    principal_kind = "app_key"
