"""Writes and domain actions on devices. Keyword-only arguments; each runs inside transaction.atomic.

The API, the admin and the tasks all call these functions; business rules live here once.
"""

import functools
import hashlib
import io
import json
import uuid
import warnings
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from fleet.activity import services as activity
from fleet.activity.models import ActivityEvent, ActorType
from fleet.db import JoinedRead, Table
from fleet.errors import Conflict, Forbidden, Invalid, PayloadTooLarge
from fleet.tenancy import credentials, rls
from fleet.tenancy.models import Organization
from fleet.tenancy.services import credential_find, credential_touch, credential_touch_due

from . import label_selector, membership, presence, registry, validation
from .models import (
    LABELS_MAX,
    OFFLINE_FACTOR,
    STALE_FACTOR,
    Connectivity,
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceStatus,
    DeviceToken,
    DeviceUser,
    EndUser,
    GroupKind,
    MembershipReason,
    Platform,
)

INVENTORY_FIELDS = (
    "serial_number",
    "unique_key",
    "os_name",
    "os_version",
    "agent_version",
    "installed_at",
    "hardware",
    "extensions",
)
PATCHABLE_STATUSES = (DeviceStatus.ACTIVE, DeviceStatus.INACTIVE, DeviceStatus.ARCHIVED)
HEARTBEAT_STATUSES = (DeviceStatus.ACTIVE, DeviceStatus.INACTIVE)  # what a device may report of itself
FRAME_EVENT_EVERY = timedelta(hours=1)
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
SWEEP_BATCH = 5000


# --- helpers ---------------------------------------------------------------------------------------
def _event(*, device, actor, verb, data=None, at=None):
    return activity.record(
        organization=device.organization,
        actor=actor,
        verb=verb,
        subject_type="device",
        subject_id=device.id,
        device_id=device.id,
        data={"device_id": device.device_id, **(data or {})},
        at=at,
    )


def connectivity_at(*, last_heartbeat, interval_s, now):
    """online within 2 x interval of the last heartbeat, stale up to 10 x, then offline."""
    if last_heartbeat is None:
        return Connectivity.NEVER_SEEN
    age = now - last_heartbeat
    if age <= timedelta(seconds=STALE_FACTOR * interval_s):
        return Connectivity.ONLINE
    if age <= timedelta(seconds=OFFLINE_FACTOR * interval_s):
        return Connectivity.STALE
    return Connectivity.OFFLINE


def _deadlines(*, last_heartbeat, interval_s):
    return (
        last_heartbeat + timedelta(seconds=STALE_FACTOR * interval_s),
        last_heartbeat + timedelta(seconds=OFFLINE_FACTOR * interval_s),
    )


def _devices_changed(*, organization, device_ids, label_keys=None):
    """Every device-side change goes through here: memberships first (the listeners read them),
    then the registry's change listeners (deployments). `device_ids` None: too many to list, every
    device of the organization is re-evaluated. `label_keys`: only these labels changed, so groups
    and deployments whose selectors do not read them are left alone."""
    if device_ids is not None:
        device_ids = list(device_ids)
        if not device_ids:
            return
    changed = membership.refresh_for_devices(organization=organization, device_ids=device_ids, label_keys=label_keys)
    registry.devices_changed(organization=organization, device_ids=device_ids, label_keys=label_keys,
                             groups_changed=changed)


# --- tokens ----------------------------------------------------------------------------------------
def _token_issue(*, device, now):
    """Revoke the device's live tokens and create a new one; return the secret (shown once)."""
    presence.forget(device_ids=[device.id])
    DeviceToken.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=now)
    secret = credentials.generate(prefix=DeviceToken.PREFIX)
    DeviceToken.objects.create(
        organization_id=device.organization_id,
        device=device,
        prefix=credentials.display_prefix(secret=secret, prefix=DeviceToken.PREFIX),
        secret_hash=credentials.hash_secret(secret),
    )
    return secret


# Every device request runs it: precompiled (fleet.db).
TOKEN_READ = JoinedRead(
    Table("t", DeviceToken),
    Table("o", Organization, on="o.id = t.org_id"),
    Table("d", Device, on="d.id = t.device_id"),
    where="t.secret_hash = %s AND t.revoked_at IS NULL",
    params=[("t", "secret_hash")],
    limit=1,
)


def _token_load(secret_hash):
    rows = TOKEN_READ.fetch([secret_hash])
    if not rows:
        return None
    token, organization, device = rows[0]
    token.organization = device.organization = organization
    token.device = device
    return token


def device_token_authenticate(*, secret):
    """Return the live DeviceToken for `secret`, with its device and organization loaded, or None.

    Broken secrets are rejected before any query; then the credential function makes the
    organization current and one precompiled query loads token + device + organization.
    """
    token = credential_find(queryset=DeviceToken.objects, secret=secret, prefix=DeviceToken.PREFIX, load=_token_load)
    if token is None or token.device.status == DeviceStatus.REVOKED:
        return None
    return token


def device_token_rate_key(*, secret_hash):
    """What rate limits count for a device token: the token, known from its hash before any query
    (a device has one live token, so this is per device)."""
    return secret_hash[:32]


def device_token_needs_touch(*, token, now=None):
    return credential_touch_due(row=token, now=now or timezone.now())


def device_token_touch(*, token, now=None):
    """Record use of a token, at most once per CREDENTIAL_LAST_USED_RESOLUTION_S."""
    credential_touch(row=token, now=now)


# --- registration ----------------------------------------------------------------------------------
@transaction.atomic
def device_register(
    *, organization, actor, device_id, platform=None, name=None, capabilities=None, labels=None, app=None,
    app_target=None, status=None, **inventory
):
    """Register a device, or re-register it (same id, fields updated, token rotated).

    `app` / `app_target` link it to the app it registered for; `status` (pending) is for devices
    created ahead of provisioning. Returns (device, secret, created). Revoked devices cannot
    re-register (Conflict).
    """
    unknown = set(inventory) - set(INVENTORY_FIELDS)
    if unknown:
        raise TypeError(f"Unknown inventory fields: {sorted(unknown)}")
    validation.validate_device_id(device_id)
    if labels is not None:
        validation.validate_labels(labels)
    if capabilities is not None:
        validation.validate_capabilities(capabilities)
    now = timezone.now()

    device = Device.objects.select_for_update().filter(organization=organization, device_id=device_id).first()
    created = False
    if device is None:
        try:
            with transaction.atomic():
                device = Device.objects.create(
                    organization=organization,
                    device_id=device_id,
                    name=name or "",
                    platform=platform or Device._meta.get_field("platform").default,
                    capabilities=capabilities or {},
                    labels=labels or {},
                    app=app,
                    app_target=app_target,
                    status=status or DeviceStatus.ACTIVE,
                    **inventory,
                )
                created = True
        except IntegrityError:  # registered concurrently: fall through to re-registration
            device = Device.objects.select_for_update().get(organization=organization, device_id=device_id)
    device.organization = organization

    if not created:
        if device.status == DeviceStatus.REVOKED:
            raise Conflict("This device has been revoked; it cannot register again.", fields={"device_id": ["Revoked."]})
        changed = {}
        if platform is not None:
            changed["platform"] = platform
        if name is not None:
            changed["name"] = name
        if capabilities is not None:
            changed["capabilities"] = capabilities
        if labels is not None:
            changed["labels"] = labels
        if app is not None:
            changed["app"] = app
        if app_target is not None:
            changed["app_target"] = app_target
        changed.update(inventory)
        for key, value in changed.items():
            setattr(device, key, value)
        device.save(update_fields=[*changed, "updated_at"])

    secret = _token_issue(device=device, now=now)
    if created:
        _event(device=device, actor=actor, verb="device.registered", data={"platform": device.platform})
    else:
        _event(device=device, actor=actor, verb="device.re_registered", data={"token_rotated": True})
    _devices_changed(organization=organization, device_ids=[device.id])
    return device, secret, created


def app_link_resolve(*, organization, platform, app_slug=None, app_identifier=None, app=None):
    """(app, target) a registering device belongs to: by app slug, by (platform, bundle identifier),
    or by the app of a publishable key (`app`), which may not name another app."""
    from apps_catalog import selectors as catalog

    if app is not None and app_slug not in (None, app.slug):
        raise Forbidden("A publishable key registers devices for its own app only.", fields={"app": ["Not this key's app."]})
    if app is None and app_slug:
        app = catalog.app_by_slug(organization=organization, slug=app_slug)
        if app is None or app.archived_at is not None:
            raise Invalid(f"Unknown app {app_slug!r}.", field="app")
    if app is None and app_identifier:
        target = catalog.app_target_by_identifier(organization=organization, platform=platform, identifier=app_identifier)
        if target is None:
            raise Invalid(f"No app target for {platform} {app_identifier!r}.", field="app_identifier")
        return target.app, target
    if app is None:
        return None, None
    target = catalog.app_target_for(organization=organization, app=app, platform=platform, identifier=app_identifier)
    if target is None and app_identifier:
        raise Invalid(f"The app has no {platform} target {app_identifier!r}.", field="app_identifier")
    return app, target


def devices_attention(*, organization, device_ids=None, queryset=None):
    """Flag devices for their next heartbeat (set-based): the heartbeat providers run for them
    until nothing is pending. Returns how many devices were flagged."""
    devices = queryset if queryset is not None else Device.objects.filter(organization=organization)
    if device_ids is not None:
        devices = devices.filter(id__in=device_ids)
    return devices.update(attention=F("attention") + 1)


@transaction.atomic
def device_create_pending(*, organization, actor, device_id, name="", labels=None, id=None):
    """A device known ahead of its first contact (provisioning): status pending, no token yet."""
    validation.validate_device_id(device_id)
    if labels:
        validation.validate_labels(labels)
    try:
        with transaction.atomic():
            device = Device.objects.create(
                id=id or uuid.uuid4(),
                organization=organization,
                device_id=device_id,
                name=name,
                labels=labels or {},
                status=DeviceStatus.PENDING,
            )
    except IntegrityError:
        raise Conflict("A device with this device_id already exists.", fields={"device_id": ["Already exists."]}) from None
    device.organization = organization
    _event(device=device, actor=actor, verb="device.registered", data={"status": DeviceStatus.PENDING})
    _devices_changed(organization=organization, device_ids=[device.id])
    return device


@transaction.atomic
def device_token_issue(*, device, actor, verb="device.token_issued"):
    """A new token for an existing device (provisioning): the previous ones stop working."""
    secret = _token_issue(device=device, now=timezone.now())
    _event(device=device, actor=actor, verb=verb)
    return secret


@transaction.atomic
def device_inventory_update(*, device, actor, inventory):
    """Store what an agent reports about itself (seed 002 inventory fields); no event: it is state."""
    unknown = set(inventory) - set(INVENTORY_FIELDS)
    if unknown:
        raise Invalid(f"Unknown inventory field {sorted(unknown)[0]!r}.", field=f"inventory.{sorted(unknown)[0]}")
    changed = {key: value for key, value in inventory.items() if getattr(device, key) != value}
    if changed:
        for key, value in changed.items():
            setattr(device, key, value)
        device.save(update_fields=[*changed, "updated_at"])
    return device


# --- operator changes ------------------------------------------------------------------------------
def merge_labels(current, patch):
    """JSON merge patch of one level: a key set to null is removed."""
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@transaction.atomic
def device_update(*, device, actor, name=None, labels=None, status=None):
    """Rename, merge-patch labels, change status (active, inactive, archived; revoked is final)."""
    updates = {}
    events = []
    if name is not None and name != device.name:
        events.append(("device.renamed", {"from": device.name, "to": name}))
        updates["name"] = name
    if labels is not None:
        validation.validate_labels(labels, allow_null_values=True)
        merged = merge_labels(device.labels, labels)
        validation.validate_labels(merged)
        if merged != device.labels:
            before = device.labels or {}
            diff = {
                "added": {k: v for k, v in merged.items() if k not in before},
                "removed": sorted(k for k in before if k not in merged),
                "changed": {k: {"from": before[k], "to": v} for k, v in merged.items() if k in before and before[k] != v},
            }
            events.append(("device.labels_changed", diff))
            updates["labels"] = merged
    if status is not None and status != device.status:
        if device.status == DeviceStatus.REVOKED:
            raise Conflict("A revoked device cannot change status.", fields={"status": ["Revoked is final."]})
        if status not in PATCHABLE_STATUSES:
            raise Invalid(f"Status cannot be set to {status!r} here.", field="status")
        events.append(("device.status_changed", {"from": device.status, "to": status}))
        updates["status"] = status
    if updates:
        for key, value in updates.items():
            setattr(device, key, value)
        device.save(update_fields=[*updates, "updated_at"])
        for verb, data in events:
            _event(device=device, actor=actor, verb=verb, data=data)
        if "status" in updates:
            _devices_changed(organization=device.organization, device_ids=[device.id])
        elif "labels" in updates:
            _devices_changed(organization=device.organization, device_ids=[device.id],
                             label_keys=[*diff["added"], *diff["removed"], *diff["changed"]])
    return device


@transaction.atomic
def device_archive(*, device, actor):
    return device_update(device=device, actor=actor, status=DeviceStatus.ARCHIVED)


@transaction.atomic
def device_revoke(*, device, actor):
    """Revoke the device and every one of its tokens, in one transaction. Idempotent."""
    now = timezone.now()
    presence.forget(device_ids=[device.id])
    tokens = DeviceToken.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=now)
    if device.status == DeviceStatus.REVOKED:
        return device
    previous = device.status
    device.status = DeviceStatus.REVOKED
    # A revoked device will not heartbeat again: its connectivity is final, the sweep ignores it.
    device.connectivity_status = Connectivity.NEVER_SEEN if device.last_heartbeat is None else Connectivity.OFFLINE
    device.stale_at = device.offline_at = None
    device.save(update_fields=["status", "connectivity_status", "stale_at", "offline_at", "updated_at"])
    _event(device=device, actor=actor, verb="device.revoked", data={"from": previous, "tokens_revoked": tokens})
    registry.device_revoked(device=device, at=now)
    _devices_changed(organization=device.organization, device_ids=[device.id])
    return device


@transaction.atomic
def device_delete(*, device, actor):
    """Delete a revoked or archived device (its activity history remains)."""
    if device.status not in (DeviceStatus.REVOKED, DeviceStatus.ARCHIVED):
        raise Conflict("Only revoked or archived devices can be deleted.", fields={"status": [device.status]})
    _event(device=device, actor=actor, verb="device.deleted", data={"name": device.name})
    frame_path = device.frame_path
    group_ids = membership.groups_of_devices(device_ids=[device.id])
    presence.forget(device_ids=[device.id])
    device.delete()
    membership.count_add(deltas=dict.fromkeys(group_ids, -1))  # one row per group went with the device
    if frame_path:
        transaction.on_commit(lambda: default_storage.delete(frame_path))


# --- heartbeat (hot path) --------------------------------------------------------------------------
HEARTBEAT_SET = ("last_heartbeat", "connectivity_status", "stale_at", "offline_at", "last_metrics", "status")
HEARTBEAT_KEEP = ("agent_version", "updated_at")  # written only when given (COALESCE keeps the stored value)


@functools.cache
def _heartbeat_sql():
    """The heartbeat's UPDATE, built once (compiling it per request cost as much as running it)."""
    quote = connection.ops.quote_name
    assignments = [f"{quote(name)} = %s" for name in HEARTBEAT_SET]
    assignments += [f"{quote(name)} = COALESCE(%s, {quote(name)})" for name in HEARTBEAT_KEEP]
    return f"UPDATE {quote(Device._meta.db_table)} SET {', '.join(assignments)} WHERE {quote('id')} = %s"


def _heartbeat_params(values, pk):
    fields = [Device._meta.get_field(name) for name in HEARTBEAT_SET + HEARTBEAT_KEEP]
    return [*(field.get_db_prep_save(values.get(field.name), connection) for field in fields),
            Device._meta.pk.get_db_prep_value(pk, connection)]


@transaction.atomic(savepoint=False)  # hot path: joins the request's transaction, no SAVEPOINT round trips
def device_heartbeat(
    *, device, actor, status=None, metrics=None, agent_version=None, users=None, touch_token=None, now=None
):
    """Record a heartbeat: one UPDATE (plus the token's last-used time folded into it on PostgreSQL).

    The latest payload is the device's current state; a replay changes nothing but last_heartbeat.
    Activity events only on transitions (came online, status changed).
    """
    now = now or timezone.now()
    if device.status == DeviceStatus.REVOKED:
        raise Conflict("This device has been revoked.")
    previous_status, previous_connectivity = device.status, device.connectivity_status
    new_status = previous_status
    if previous_status in (DeviceStatus.PENDING, DeviceStatus.ACTIVE, DeviceStatus.INACTIVE):
        new_status = status or (DeviceStatus.ACTIVE if previous_status == DeviceStatus.PENDING else previous_status)
    stale_at, offline_at = _deadlines(last_heartbeat=now, interval_s=device.heartbeat_interval_s)
    values = {
        "last_heartbeat": now,
        "connectivity_status": Connectivity.ONLINE,
        "stale_at": stale_at,
        "offline_at": offline_at,
        "last_metrics": metrics if metrics is not None else {},
        "status": new_status,
    }
    if agent_version is not None:
        values["agent_version"] = agent_version
    if new_status != previous_status or (agent_version is not None and agent_version != device.agent_version):
        values["updated_at"] = now

    statement, params = _heartbeat_sql(), _heartbeat_params(values, device.pk)
    touch = touch_token is not None and device_token_needs_touch(token=touch_token, now=now)
    folded = touch and connection.vendor == "postgresql"  # SQLite has no data-modifying CTEs
    if folded:
        table = connection.ops.quote_name(DeviceToken._meta.db_table)
        statement = f'WITH token_touch AS (UPDATE {table} SET "last_used_at" = %s WHERE "id" = %s) {statement}'
        params = (now, touch_token.pk, *params)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
    if folded:
        touch_token.last_used_at = now
    elif touch:
        device_token_touch(token=touch_token, now=now)
    for key, value in values.items():
        setattr(device, key, value)

    if users:
        _users_seen(device=device, users=users, now=now)
    if previous_connectivity != Connectivity.ONLINE:
        _event(device=device, actor=actor, verb="device.came_online", data={"from": previous_connectivity}, at=now)
    if new_status != previous_status:
        _event(
            device=device, actor=actor, verb="device.status_changed", data={"from": previous_status, "to": new_status}
        )
    return device


# A steady path's statement starts with these: the live token, touched when due (as authentication
# would), whatever the rest of the statement finds.
STEADY_TOKEN_SQL = """
    WITH token AS (
        SELECT id, device_id FROM {token} WHERE secret_hash = %(secret_hash)s AND revoked_at IS NULL
    ), touch AS (
        UPDATE {token} SET last_used_at = %(now)s
        WHERE id IN (SELECT id FROM token) AND (last_used_at IS NULL OR last_used_at <= %(touch_before)s)
    )
"""


@transaction.atomic(savepoint=False)  # the request's transaction: the full path continues in it
def device_token_steady(*, secret_hash, device_ref, now, sql, params):
    """Run a steady path's statement for the device token with `secret_hash`: the credential function,
    then `sql` after STEADY_TOKEN_SQL (it joins `token` and matches the device on %(device_ref)s or
    %(device_uuid)s). Returns its one row or None."""
    try:
        device_uuid = uuid.UUID(device_ref)
    except ValueError:
        device_uuid = None
    resolution = timedelta(seconds=settings.CREDENTIAL_LAST_USED_RESOLUTION_S)
    params = {
        **params, "secret_hash": secret_hash, "now": now, "touch_before": now - resolution,
        "device_ref": device_ref, "device_uuid": device_uuid,
    }
    with connection.cursor() as cursor:
        cursor.execute(*rls.credential_statement(table=DeviceToken._meta.db_table, secret_hash=secret_hash))
        cursor.execute(_steady_statement(sql), params)
        return cursor.fetchone()


@functools.cache
def _steady_statement(sql):
    """STEADY_TOKEN_SQL followed by `sql`, built once per process (each hot path has one `sql`)."""
    return STEADY_TOKEN_SQL.format(token=connection.ops.quote_name(DeviceToken._meta.db_table)) + sql


# The steady state: most heartbeats come from an online device that repeats its status (one of
# HEARTBEAT_STATUSES), not flagged for attention. For them the heartbeat only moves last_heartbeat and
# its deadlines and stores the metrics, so one UPDATE joining the token can both authenticate and write.
# The presence flush (devices.presence) applies the heartbeats answered from Redis with the same SQL.
def steady_heartbeat_sql(*, at, status, agent_version, metrics):
    """SET and WHERE clauses of a steady heartbeat's UPDATE of device `d`, given SQL expressions for
    what it reports; its parameters come from steady_heartbeat_params."""
    assignments = f"""
        last_heartbeat = {at},
        stale_at = {at} + interval '1 second' * (%(stale_factor)s * d.heartbeat_interval_s),
        offline_at = {at} + interval '1 second' * (%(offline_factor)s * d.heartbeat_interval_s),
        last_metrics = {metrics}
    """
    conditions = f"""
        d.status = ANY(%(reportable)s) AND d.status = COALESCE({status}, d.status)
        AND d.connectivity_status = %(online)s AND d.attention = 0
        AND ({agent_version} IS NULL OR d.agent_version = {agent_version})
    """
    return assignments, conditions


def steady_heartbeat_params():
    return {
        "stale_factor": STALE_FACTOR, "offline_factor": OFFLINE_FACTOR, "online": Connectivity.ONLINE.value,
        "reportable": [value.value for value in HEARTBEAT_STATUSES],
    }


@functools.cache
def _steady_heartbeat_sql():
    device = connection.ops.quote_name(Device._meta.db_table)
    assignments, conditions = steady_heartbeat_sql(
        at="%(now)s", status="%(status)s::text", agent_version="%(agent_version)s::text", metrics="%(metrics)s"
    )
    return f"""
        UPDATE {device} AS d SET {assignments}
        FROM token
        WHERE d.id = token.device_id
          AND (d.device_id = %(device_ref)s OR d.id = %(device_uuid)s::uuid)
          AND {conditions}
        RETURNING d.status, d.heartbeat_interval_s, d.id, d.device_id, d.org_id, d.agent_version
    """


def device_heartbeat_steady(*, secret_hash, device_ref, now, status=None, metrics=None, agent_version=None):
    """A steady-state heartbeat in two statements (PostgreSQL): the credential function and one UPDATE.
    The UPDATE checks the token (live, this device's), touches it when due, and writes only
    if the heartbeat would change nothing but last_heartbeat, its deadlines and the metrics, exactly
    as device_heartbeat would. Returns a SteadyHeartbeat, or None when device_heartbeat must run: any
    other database, a transition, an unknown token or device (nothing written then but the token's
    last-used time, in the same transaction).
    """
    if not rls.is_postgres():
        return None
    params = {
        **steady_heartbeat_params(),
        "metrics": Device._meta.get_field("last_metrics").get_db_prep_save(metrics or {}, connection),
        "status": status,
        "agent_version": agent_version,
    }
    row = device_token_steady(
        secret_hash=secret_hash, device_ref=device_ref, now=now, sql=_steady_heartbeat_sql(), params=params
    )
    return None if row is None else SteadyHeartbeat(*row)


@dataclass(frozen=True)
class SteadyHeartbeat:
    status: str
    heartbeat_interval_s: int
    device_id: uuid.UUID  # the device's primary key
    device_ref: str  # its user-chosen identifier (Device.device_id)
    organization_id: uuid.UUID
    agent_version: str | None

    def lease(self):
        """What devices.presence stores of it (a `HEARTBEAT` lease)."""
        return {"device": self.device_id, "ref": self.device_ref, "org": self.organization_id, "status": self.status,
                "agent": self.agent_version, "interval": self.heartbeat_interval_s}


def _users_seen(*, device, users, now):
    """Upsert the end users an agent reports and their junction rows (three statements).

    The ids are read back by key: a UUID primary key is not returned by an upsert of an existing row.
    """
    by_key = {}
    for user in users:
        by_key[user["user_key"]] = user
    EndUser.objects.bulk_create(
        [
            EndUser(
                organization_id=device.organization_id,
                user_key=key,
                username=user.get("username") or key,
                last_activity_at=user.get("last_activity_at"),
                last_desktop_activity_at=user.get("last_activity_at"),
                created_at=now,
                updated_at=now,
            )
            for key, user in by_key.items()
        ],
        update_conflicts=True,
        unique_fields=["organization", "user_key"],
        update_fields=["username", "last_activity_at", "last_desktop_activity_at", "updated_at"],
    )
    user_ids = EndUser.objects.filter(organization_id=device.organization_id, user_key__in=list(by_key)).values_list(
        "id", flat=True
    )
    DeviceUser.objects.bulk_create(
        [
            DeviceUser(
                organization_id=device.organization_id, device=device, user_id=user_id, enrolled_at=now,
                last_seen_at=now,
            )
            for user_id in user_ids
        ],
        update_conflicts=True,
        unique_fields=["device", "user"],
        update_fields=["last_seen_at"],
    )


# --- frames ----------------------------------------------------------------------------------------
def frame_verify(content):
    """Return (width, height) of a real, complete JPEG, or raise Invalid (field "frame")."""
    from PIL import Image

    if not content.startswith(JPEG_MAGIC):
        raise Invalid("The frame is not a JPEG image.", field="frame")
    if not content.rstrip(b"\x00").endswith(JPEG_END):
        # Data after the end-of-image marker: a truncated frame, or a polyglot (JPEG + ZIP, …).
        raise Invalid("The frame does not end where its JPEG data ends.", field="frame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content), formats=["JPEG"]) as image:
                # The header's size is checked before decoding: a small file can claim a huge image.
                if image.width * image.height > settings.FRAME_MAX_PIXELS:
                    raise Invalid("The frame has too many pixels.", field="frame")
                image.load()  # full decode: truncated or corrupt data fails here
                return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Invalid("The frame has too many pixels.", field="frame") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Invalid(f"The frame is not a valid JPEG image ({type(exc).__name__}).", field="frame") from None


@transaction.atomic
def device_frame_upload(*, device, actor, content, now=None):
    """Store the device's latest camera frame, replacing (and deleting) the previous one."""
    now = now or timezone.now()
    if device.status == DeviceStatus.REVOKED:
        raise Conflict("This device has been revoked.")
    limit = settings.FRAME_MAX_BYTES
    if len(content) > limit:
        raise PayloadTooLarge(f"A frame is at most {limit} bytes.", fields={"frame": [f"At most {limit} bytes."]})
    if not content:
        raise Invalid("The frame is empty.", field="frame")
    width, height = frame_verify(content)
    path = default_storage.save(f"frames/{device.organization_id}/{device.id}/{uuid.uuid4().hex}.jpg", ContentFile(content))
    old_path = device.frame_path
    values = {
        "frame_path": path,
        "frame_captured_at": now,
        "frame_size_bytes": len(content),
        "frame_width": width,
        "frame_height": height,
        "frame_etag": hashlib.sha256(content).hexdigest()[:32],
    }
    record = device.frame_event_at is None or now - device.frame_event_at >= FRAME_EVENT_EVERY
    if record:
        values["frame_event_at"] = now
    Device.objects.filter(pk=device.pk).update(**values)
    for key, value in values.items():
        setattr(device, key, value)
    if old_path and old_path != path:
        transaction.on_commit(lambda: default_storage.delete(old_path))
    if record:
        _event(device=device, actor=actor, verb="device.frame_uploaded", data={"size_bytes": len(content)}, at=now)
    return device


def device_frame_read(*, device):
    """The latest frame's bytes, or None."""
    if not device.frame_path:
        return None
    try:
        with default_storage.open(device.frame_path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


# --- connectivity sweep (all organizations) --------------------------------------------------------
def _sweep_step(*, now, source, target, deadline_field, verb):
    """Move up to SWEEP_BATCH devices past their deadline to `target`; returns how many moved."""
    deadline = {f"{deadline_field}__lte": now}
    rows = list(
        Device.objects.select_for_update(skip_locked=True)
        .filter(connectivity_status__in=source, **deadline)
        .order_by()
        .values_list("id", "organization_id", "device_id", "last_heartbeat")[:SWEEP_BATCH]
    )
    if not rows:
        return 0
    Device.objects.filter(pk__in=[row[0] for row in rows], connectivity_status__in=source, **deadline).update(
        connectivity_status=target
    )
    ActivityEvent.objects.bulk_create(
        [
            ActivityEvent(
                organization_id=org_id,
                actor_type=ActorType.SYSTEM,
                actor_id="",
                actor_label="system",
                verb=verb,
                subject_type="device",
                subject_id=str(pk),
                device_ref=pk,
                data={"device_id": device_id, "last_heartbeat": last_heartbeat.isoformat() if last_heartbeat else None},
                created_at=now,
            )
            for pk, org_id, device_id, last_heartbeat in rows
        ]
    )
    return len(rows)


def devices_connectivity_sweep(*, now=None):
    """Set-based: online -> stale -> offline for devices past their deadlines, across organizations."""
    now = now or timezone.now()
    counts = {"stale": 0, "offline": 0}
    presence.flush()  # heartbeats answered from Redis reach their deadlines first
    with rls.bypass(reason="devices connectivity sweep"), transaction.atomic():
        steps = (
            ("offline", [Connectivity.ONLINE, Connectivity.STALE], Connectivity.OFFLINE, "offline_at", "device.went_offline"),
            ("stale", [Connectivity.ONLINE], Connectivity.STALE, "stale_at", "device.went_stale"),
        )
        for key, source, target, field, verb in steps:
            while True:
                moved = _sweep_step(now=now, source=source, target=target, deadline_field=field, verb=verb)
                counts[key] += moved
                if moved < SWEEP_BATCH:
                    break
    presence.flush()  # and the devices it moved lose their leases now
    return counts


# --- device groups ---------------------------------------------------------------------------------
GROUP_SAMPLE = 10
RESERVED_GROUP_SLUGS = frozenset({"preview"})  # would shadow POST /device-groups/preview


def _check_slug(slug):
    if slug in RESERVED_GROUP_SLUGS:
        raise Invalid(f"The slug {slug!r} is reserved.", field="slug")


def _group_event(*, group, actor, verb, data=None):
    return activity.record(
        organization=group.organization,
        actor=actor,
        verb=verb,
        subject_type="device_group",
        subject_id=group.id,
        data={"slug": group.slug, **(data or {})},
    )


def _selector(selector, *, kind):
    if kind == GroupKind.STATIC:
        if selector:
            raise Invalid("Static groups have explicit members, not a selector.", field="selector")
        return {}
    return label_selector.validate_selector(selector, platforms=Platform.values)


@transaction.atomic
def device_group_create(*, organization, actor, name, slug, kind=GroupKind.DYNAMIC, selector=None, description=""):
    """Create a group; a dynamic group's members are materialized in the same transaction."""
    selector = _selector(selector, kind=kind)
    _check_slug(slug)
    membership.lock_for_groups(organization=organization)
    try:
        with transaction.atomic():
            group = DeviceGroup.objects.create(
                organization=organization, name=name, slug=slug, kind=kind, selector=selector, description=description
            )
    except IntegrityError:
        raise Conflict("A group with this slug already exists.", fields={"slug": ["Already exists."]}) from None
    group.organization = organization
    membership.refresh_dynamic(organization=organization, groups=[group])
    group.refresh_from_db(fields=["member_count"])
    _group_event(group=group, actor=actor, verb="device_group.created",
                 data={"kind": kind, "selector": selector, "member_count": group.member_count})
    registry.groups_changed(organization=organization, group_ids=[group.id])
    return group


@transaction.atomic
def device_group_update(*, group, actor, name=None, slug=None, description=None, selector=None, kind=None):
    """Rename, re-describe, or change a dynamic group's selector (memberships follow in one pass)."""
    if kind is not None and kind != group.kind:
        raise Conflict("A group's kind cannot change; create a new group.", fields={"kind": [group.kind]})
    changed = {}
    if name is not None and name != group.name:
        changed["name"] = name
    if slug is not None and slug != group.slug:
        _check_slug(slug)
        changed["slug"] = slug
    if description is not None and description != group.description:
        changed["description"] = description
    if selector is not None:
        selector = _selector(selector, kind=group.kind)
        if selector != group.selector:
            changed["selector"] = selector
    if not changed:
        return group
    if "selector" in changed:
        membership.lock_for_groups(organization=group.organization)
    before = {key: getattr(group, key) for key in changed}
    for key, value in changed.items():
        setattr(group, key, value)
    try:
        with transaction.atomic():
            group.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        raise Conflict("A group with this slug already exists.", fields={"slug": ["Already exists."]}) from None
    data = {"changed": sorted(changed)}
    if "selector" in changed:
        touched = membership.refresh_dynamic(organization=group.organization, groups=[group])
        group.refresh_from_db(fields=["member_count"])
        data.update({"selector_from": before["selector"], "selector_to": group.selector, "member_count": group.member_count})
        _group_event(group=group, actor=actor, verb="device_group.updated", data=data)
        if touched:
            registry.groups_changed(organization=group.organization, group_ids=[group.id])
    else:
        _group_event(group=group, actor=actor, verb="device_group.updated", data=data)
    return group


@transaction.atomic
def device_group_delete(*, group, actor):
    organization, group_id = group.organization, group.id
    _group_event(group=group, actor=actor, verb="device_group.deleted", data={"member_count": group.member_count})
    group.delete()
    registry.groups_changed(organization=organization, group_ids=[group_id])


def devices_resolve(*, organization, refs, field="device_ids"):
    """The organization's devices named by UUID `id` or `device_id`; 400 listing unknown ones."""
    refs = [str(ref) for ref in refs]
    if not refs:
        raise Invalid("Name at least one device.", field=field)
    uuids = []
    for ref in refs:
        try:
            uuids.append(uuid.UUID(ref))
        except ValueError:
            pass
    found = list(
        Device.objects.filter(organization=organization)
        .filter(Q(id__in=uuids) | Q(device_id__in=refs))
        .values_list("id", "device_id")
    )
    known = {str(pk) for pk, _ in found} | {device_id for _, device_id in found}
    unknown = [ref for ref in refs if ref not in known and (not _is_uuid(ref) or str(uuid.UUID(ref)) not in known)]
    if unknown:
        raise Invalid(f"Unknown devices: {', '.join(unknown[:50])}.", fields={field: unknown})
    return sorted({pk for pk, _ in found}, key=str)


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _static_only(group):
    if group.kind != GroupKind.STATIC:
        raise Conflict("Members of a dynamic group follow its selector; edit the selector instead.",
                       fields={"kind": [group.kind]})


@transaction.atomic
def device_group_members_add(*, group, actor, device_refs):
    """Add devices to a static group (already-members are ignored). Returns how many were added."""
    _static_only(group)
    organization = group.organization
    device_ids = devices_resolve(organization=organization, refs=device_refs)
    existing = set(DeviceGroupMembership.objects.filter(group=group, device_id__in=device_ids).values_list("device_id", flat=True))
    now = timezone.now()
    DeviceGroupMembership.objects.bulk_create(
        [
            DeviceGroupMembership(organization_id=group.organization_id, group=group, device_id=pk,
                                  reason=MembershipReason.STATIC, created_at=now)
            for pk in device_ids if pk not in existing
        ],
        ignore_conflicts=True,
    )
    added = len(device_ids) - len(existing)
    if added:
        membership.recount(group_ids=[group.id])
        group.refresh_from_db(fields=["member_count"])
        _group_event(group=group, actor=actor, verb="device_group.members_added", data={"count": added})
        registry.groups_changed(organization=organization, group_ids=[group.id])
    return added


@transaction.atomic
def device_group_members_remove(*, group, actor, device_refs):
    """Remove devices from a static group (non-members are ignored). Returns how many were removed."""
    _static_only(group)
    organization = group.organization
    device_ids = devices_resolve(organization=organization, refs=device_refs)
    removed, _ = DeviceGroupMembership.objects.filter(group=group, device_id__in=device_ids).delete()
    if removed:
        membership.recount(group_ids=[group.id])
        group.refresh_from_db(fields=["member_count"])
        _group_event(group=group, actor=actor, verb="device_group.members_removed", data={"count": removed})
        registry.groups_changed(organization=organization, group_ids=[group.id])
    return removed


def device_group_preview(*, organization, selector):
    """Dry run: how many devices a selector matches now, and up to 10 of them. No writes."""
    selector = label_selector.validate_selector(selector, platforms=Platform.values)
    devices = membership.eligible_devices(organization=organization).filter(label_selector.selector_q(selector))
    return {"total": devices.count(), "sample": list(devices.order_by("device_id")[:GROUP_SAMPLE])}


# --- bulk labels -----------------------------------------------------------------------------------
@transaction.atomic
def devices_bulk_labels(*, organization, actor, target, set_labels=None, remove=None):
    """Set and remove labels on every targeted device in set-based SQL; memberships and deployments
    follow for the devices that changed. One activity event. Returns {"matched", "changed"}."""
    set_labels = dict(set_labels or {})
    remove = list(dict.fromkeys(remove or []))
    if not set_labels and not remove:
        raise Invalid("Give labels to set and/or keys to remove.", field="set")
    validation.validate_labels(set_labels, field="set")
    for index, key in enumerate(remove):
        error = validation.label_key_error(key)
        if error:
            raise Invalid(error, field=f"remove.{index}")
    both = sorted(set(set_labels) & set(remove))
    if both:
        raise Invalid(f"Label {both[0]!r} is both set and removed.", field="remove")

    devices, described = _bulk_target(organization=organization, target=target)
    target_sql, target_params = _where(devices)
    table = connection.ops.quote_name(Device._meta.db_table)
    if connection.vendor == "postgresql":
        new = '(("labels" || %s::jsonb) - %s::text[])'
        new_params = [json.dumps(set_labels), remove]
        # Only a device that gains a key can pass the limit: the others are not counted (a tenth of the cost).
        count_keys = f'CASE WHEN "labels" ?& %s::text[] THEN 0 ELSE (SELECT count(*) FROM jsonb_object_keys({new})) END'
        count_params = [list(set_labels), *new_params]
        differs = f'"labels" <> {new}'
    else:
        removes = "".join(", %s" for _ in remove)
        new = f'json_remove(json_patch(json("labels"), %s){removes})'
        new_params = [json.dumps(set_labels), *[f'$."{key}"' for key in remove]]
        count_keys = f"(SELECT count(*) FROM json_each({new}))"
        count_params = new_params
        differs = f'json("labels") <> {new}'
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {count_keys} > %s) FROM {table} WHERE ({target_sql})"
            if connection.vendor == "postgresql"
            else f"SELECT count(*), coalesce(sum(CASE WHEN {count_keys} > %s THEN 1 ELSE 0 END), 0) FROM {table} "
            f"WHERE ({target_sql})",
            [*count_params, LABELS_MAX, *target_params],
        )
        matched, too_many = cursor.fetchone()
        if too_many:
            raise Invalid(
                f"{too_many} device(s) would have more than {LABELS_MAX} labels; nothing was changed.", field="set"
            )
        update = (f'UPDATE {table} SET "labels" = {new}, "updated_at" = %s WHERE ({target_sql}) AND {differs} '
                  "RETURNING id")
        now = Device._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
        update_params = [*new_params, now, *target_params, *new_params]
        if connection.vendor == "postgresql":
            # Above ID_LIST_MAX changed devices, memberships and deployments re-evaluate the whole
            # organization: count in SQL and send the ids back only when they will be used (100,000
            # UUIDs cost 170 ms to read).
            cursor.execute(f"WITH changed AS ({update}) SELECT count(*) OVER (), id FROM changed LIMIT %s",
                           [*update_params, membership.ID_LIST_MAX + 1])
            rows = cursor.fetchall()
            changed = rows[0][0] if rows else 0
            changed_ids = [row[1] for row in rows] if changed <= membership.ID_LIST_MAX else None
        else:
            cursor.execute(update, update_params)
            changed_ids = [uuid.UUID(str(row[0])) for row in cursor.fetchall()]
            changed = len(changed_ids)
    activity.record(
        organization=organization,
        actor=actor,
        verb="devices.labels_bulk_changed",
        subject_type="organization",
        subject_id=organization.id,
        data={"target": described, "set": set_labels, "remove": remove, "matched": matched, "changed": changed},
    )
    _devices_changed(organization=organization, device_ids=changed_ids, label_keys=[*set_labels, *remove])
    return {"matched": matched, "changed": changed}


def _where(devices):
    """The WHERE clause of a queryset of devices, for a statement of our own on the same table: the
    bulk statements filter the devices in place instead of joining them to a copy of themselves (a
    second scan and a hash of every targeted device)."""
    joined = [alias for alias, refs in devices.query.alias_refcount.items() if refs and alias != Device._meta.db_table]
    assert not joined, f"a bulk target filters the devices' own columns, not {joined}"
    return devices.query.get_compiler(using=devices.db).compile(devices.query.where)


def _bulk_target(*, organization, target):
    if not isinstance(target, dict) or len([key for key in ("device_ids", "group", "selector") if key in target]) != 1:
        raise Invalid("The target is exactly one of device_ids, group or selector.", field="target")
    devices = Device.objects.filter(organization=organization).order_by()
    if "device_ids" in target:
        refs = target["device_ids"]
        if not isinstance(refs, list):
            raise Invalid("device_ids is a list of device ids.", field="target.device_ids")
        ids = devices_resolve(organization=organization, refs=refs, field="target.device_ids")
        return devices.filter(id__in=ids), {"device_ids": len(ids)}
    if "group" in target:
        group = device_group_by_ref(organization=organization, ref=target["group"])
        if group is None:
            raise Invalid(f"Unknown group {target['group']!r}.", field="target.group")
        return devices.filter(id__in=membership.member_ids(organization=organization, group_ids=[group.id])), {
            "group": str(group.id), "slug": group.slug}
    selector = label_selector.validate_selector(target["selector"], field="target.selector", platforms=Platform.values)
    return membership.eligible_devices(organization=organization).filter(label_selector.selector_q(selector)), {
        "selector": selector}


def device_group_by_ref(*, organization, ref):
    """The organization's group named by UUID or slug, or None."""
    if not isinstance(ref, str) or not ref:
        return None
    groups = DeviceGroup.objects.filter(organization=organization)
    if _is_uuid(ref):
        group = groups.filter(id=ref).first()
        if group is not None:
            return group
    return groups.filter(slug=ref).first()
