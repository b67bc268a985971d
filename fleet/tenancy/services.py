from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.errors import Forbidden, Invalid, Unauthorized
from fleet.tenancy import credentials, rls
from fleet.tenancy.models import ApiKey, Membership, Organization, Role


@transaction.atomic
def organization_create(*, slug, name=None):
    return Organization.objects.create(slug=slug, name=name or slug)


@transaction.atomic
def organization_update(*, organization, name):
    organization.name = name
    organization.save(update_fields=["name"])
    return organization


@transaction.atomic
def membership_set(*, organization, user, role):
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


@transaction.atomic
def api_key_create(*, organization, name, role=Role.ADMIN, created_by=None, creator_role=None, expires_at=None):
    """Create a key and return (api_key, secret). The secret is never stored and never shown again."""
    if creator_role is not None and not Role.at_least(creator_role, role):
        raise Forbidden(f"A {creator_role} cannot create a key with role {role}.", fields={"role": ["Role too high."]})
    secret = credentials.generate(prefix=ApiKey.PREFIX)
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        role=role,
        prefix=credentials.display_prefix(secret=secret, prefix=ApiKey.PREFIX),
        secret_hash=credentials.hash_secret(secret),
        created_by=created_by,
        expires_at=expires_at,
    )
    return api_key, secret


@transaction.atomic
def api_key_revoke(*, api_key):
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, secret):
    """Return the usable ApiKey for `secret` (organization made current), or None.

    Malformed or checksum-broken secrets are rejected before any query.
    """
    if not credentials.is_well_formed(secret=secret, prefix=ApiKey.PREFIX):
        return None
    secret_hash = credentials.hash_secret(secret)
    rls.credential_org_id(table=ApiKey._meta.db_table, secret_hash=secret_hash)
    api_key = ApiKey.objects.select_related("organization").filter(secret_hash=secret_hash).first()
    now = timezone.now()
    if api_key is None or not api_key.is_usable(now):
        return None
    if not rls.current_org_ids():  # SQLite: no credential function, activate from the row
        rls.activate(org_ids=[api_key.organization_id])
    resolution = timedelta(seconds=settings.CREDENTIAL_LAST_USED_RESOLUTION_S)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def auth_token_issue(*, username, password, organization_slug=None):
    """Check a user's password and return a refresh token bound to one of their organizations."""
    from django.contrib.auth import authenticate
    from rest_framework_simplejwt.tokens import RefreshToken

    from fleet.tenancy.selectors import memberships_of_user

    user = authenticate(username=username, password=password)
    if user is None:
        raise Unauthorized("Invalid username or password.")
    memberships = memberships_of_user(user=user)
    if organization_slug:
        memberships = [m for m in memberships if m.organization.slug == organization_slug]
        if not memberships:
            raise Unauthorized("You are not a member of that organization.")
    elif len(memberships) > 1:
        raise Invalid("You belong to several organizations: name one.", field="organization")
    if not memberships:
        raise Unauthorized("You are not a member of any organization.")
    membership = memberships[0]
    refresh = RefreshToken.for_user(user)
    refresh["org_id"] = str(membership.organization_id)
    return refresh, membership
