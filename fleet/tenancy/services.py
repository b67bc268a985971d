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


def credential_find(*, queryset, secret, prefix, load=None):
    """The row of `queryset` holding `secret`, with its organization made current, or None.

    Every credential kind goes through here: a malformed or checksum-broken secret never reaches
    the database; then one statement finds the organization (rls.credential_org_id) and one
    unordered indexed read loads the row (`load(secret_hash)` instead of `queryset` where a hot
    path has its own precompiled read).
    """
    if not isinstance(secret, str) or not credentials.is_well_formed(secret=secret, prefix=prefix):
        return None
    secret_hash = credentials.hash_secret(secret)
    rls.credential_org_id(table=queryset.model._meta.db_table, secret_hash=secret_hash)
    if load is not None:
        row = load(secret_hash)
    else:
        row = next(iter(queryset.filter(secret_hash=secret_hash).order_by()[:1]), None)
    if row is not None and not rls.current_org_ids():  # SQLite: no credential function
        rls.activate(org_ids=[row.organization_id])
    return row


def credential_touch_due(*, row, now):
    """Whether `last_used_at` is due: it is written at most once per CREDENTIAL_LAST_USED_RESOLUTION_S."""
    resolution = timedelta(seconds=settings.CREDENTIAL_LAST_USED_RESOLUTION_S)
    return row.last_used_at is None or now - row.last_used_at >= resolution


def credential_touch(*, row, now=None):
    now = now or timezone.now()
    if credential_touch_due(row=row, now=now):
        type(row).objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now


def api_key_authenticate(*, secret):
    """Return the usable ApiKey for `secret` (organization made current), or None."""
    api_key = credential_find(queryset=ApiKey.objects.select_related("organization"), secret=secret, prefix=ApiKey.PREFIX)
    now = timezone.now()
    if api_key is None or not api_key.is_usable(now):
        return None
    credential_touch(row=api_key, now=now)
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
