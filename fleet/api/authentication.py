"""Every authenticated request resolves to exactly one organization, carried by a Principal.

Authenticators make the organization current (fleet.tenancy.rls) as part of resolving it, inside
the request's transaction, so every later query runs under row-level security.
"""

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from fleet.activity.models import ActorType
from fleet.activity.services import Actor
from fleet.tenancy import rls, selectors
from fleet.tenancy.models import Organization
from fleet.tenancy.services import api_key_authenticate

# One message for unknown, revoked, rotated and expired credentials: nothing to tell them apart.
INVALID_CREDENTIALS = "Invalid or expired credentials."
ORG_HEADER = "HTTP_X_ORGANIZATION"


@dataclass
class Principal:
    """Who is calling, for which organization, with which role."""

    kind: str  # "api_key", "user", "device", or a kind added by a domain app
    organization: Organization
    role: str | None
    credential_id: str
    label: str = ""
    user: Any = None
    api_key: Any = None
    device: Any = None
    extra: dict = field(default_factory=dict)
    rate_key: str = ""  # what rate limits count, when not credential_id (devices: per token)

    @property
    def actor(self):
        actor_type = self.kind if self.kind in ActorType.values else ActorType.SYSTEM
        return Actor(type=actor_type, id=self.credential_id, label=self.label)


def bearer_token(request):
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer sk_live_…` organization API keys."""

    prefix = "sk_"

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None or not token.startswith(self.prefix):
            return None
        api_key = api_key_authenticate(secret=token)
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        principal = Principal(
            kind="api_key",
            organization=api_key.organization,
            role=api_key.role,
            credential_id=str(api_key.id),
            label=api_key.name,
            api_key=api_key,
        )
        return AnonymousUser(), principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class JWTAuthentication(SimpleJWTAuthentication):
    """User JWTs from POST /api/v1/auth/token; the organization is a claim, re-checked every request."""

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None or token.count(".") != 2:
            return None
        try:
            validated = self.get_validated_token(token.encode())
            user = self.get_user(validated)
        except (InvalidToken, TokenError, exceptions.AuthenticationFailed):
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS) from None
        organization = Organization.objects.filter(id=validated.get("org_id")).first()
        if organization is None:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        return user, member_principal(user=user, organization=organization, kind="user")

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """Browsable API: the logged-in user's organization, chosen with X-Organization when several."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        slug = request.META.get(ORG_HEADER)
        if slug:
            organization = selectors.organization_by_slug(slug=slug)
        else:
            memberships = selectors.memberships_of_user(user=user)
            if len(memberships) > 1:
                raise exceptions.AuthenticationFailed("You belong to several organizations: send X-Organization.")
            organization = memberships[0].organization if memberships else None
        if organization is None:
            raise exceptions.AuthenticationFailed("No organization.")
        return user, member_principal(user=user, organization=organization, kind="user")


def member_principal(*, user, organization, kind):
    rls.activate(org_ids=[organization.id])
    membership = selectors.membership_get(organization=organization, user=user)
    if membership is None or not user.is_active:
        raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
    return Principal(
        kind=kind,
        organization=organization,
        role=membership.role,
        credential_id=str(user.pk),
        label=user.get_username(),
        user=user,
    )
