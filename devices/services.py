"""Writes and domain actions on devices. Keyword-only arguments; each runs inside transaction.atomic.

The API, the admin and the tasks all call these functions; business rules live here once.
"""

import hashlib
import io
import uuid
import warnings
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import sql
from django.utils import timezone

from fleet.activity import services as activity
from fleet.activity.models import ActivityEvent, ActorType
from fleet.errors import Conflict, Forbidden, Invalid, PayloadTooLarge
from fleet.tenancy import credentials, rls

from . import registry, validation
from .models import (
    OFFLINE_FACTOR,
    STALE_FACTOR,
    Connectivity,
    Device,
    DeviceStatus,
    DeviceToken,
    DeviceUser,
    EndUser,
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
FRAME_EVENT_EVERY = timedelta(hours=1)
JPEG_MAGIC = b"\xff\xd8\xff"
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


# --- tokens ----------------------------------------------------------------------------------------
def _token_issue(*, device, now):
    """Revoke the device's live tokens and create a new one; return the secret (shown once)."""
    DeviceToken.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=now)
    secret = credentials.generate(prefix=DeviceToken.PREFIX)
    DeviceToken.objects.create(
        organization_id=device.organization_id,
        device=device,
        prefix=credentials.display_prefix(secret=secret, prefix=DeviceToken.PREFIX),
        secret_hash=credentials.hash_secret(secret),
    )
    return secret


def device_token_authenticate(*, secret):
    """Return the live DeviceToken for `secret`, with its device and organization loaded, or None.

    Broken secrets are rejected before any query; then the credential function makes the
    organization current and one query loads token + device + organization.
    """
    if not credentials.is_well_formed(secret=secret, prefix=DeviceToken.PREFIX):
        return None
    secret_hash = credentials.hash_secret(secret)
    rls.credential_org_id(table=DeviceToken._meta.db_table, secret_hash=secret_hash)
    token = (
        DeviceToken.objects.select_related("device", "organization")
        .filter(secret_hash=secret_hash, revoked_at__isnull=True)
        .first()
    )
    if token is None or token.device.status == DeviceStatus.REVOKED:
        return None
    if not rls.current_org_ids():  # SQLite: no credential function, activate from the row
        rls.activate(org_ids=[token.organization_id])
    token.device.organization = token.organization  # cached: no query when services need it
    return token


def device_token_needs_touch(*, token, now=None):
    now = now or timezone.now()
    resolution = timedelta(seconds=settings.CREDENTIAL_LAST_USED_RESOLUTION_S)
    return token.last_used_at is None or now - token.last_used_at >= resolution


def device_token_touch(*, token, now=None):
    """Record use of a token, at most once per CREDENTIAL_LAST_USED_RESOLUTION_S."""
    now = now or timezone.now()
    if device_token_needs_touch(token=token, now=now):
        DeviceToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


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
    registry.devices_changed(organization=organization, device_ids=[device.id])
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
    registry.devices_changed(organization=organization, device_ids=[device.id])
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
        if "labels" in updates or "status" in updates:
            registry.devices_changed(organization=device.organization, device_ids=[device.id])
    return device


@transaction.atomic
def device_archive(*, device, actor):
    return device_update(device=device, actor=actor, status=DeviceStatus.ARCHIVED)


@transaction.atomic
def device_revoke(*, device, actor):
    """Revoke the device and every one of its tokens, in one transaction. Idempotent."""
    now = timezone.now()
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
    registry.devices_changed(organization=device.organization, device_ids=[device.id])
    return device


@transaction.atomic
def device_delete(*, device, actor):
    """Delete a revoked or archived device (its activity history remains)."""
    if device.status not in (DeviceStatus.REVOKED, DeviceStatus.ARCHIVED):
        raise Conflict("Only revoked or archived devices can be deleted.", fields={"status": [device.status]})
    _event(device=device, actor=actor, verb="device.deleted", data={"name": device.name})
    frame_path = device.frame_path
    device.delete()
    if frame_path:
        transaction.on_commit(lambda: default_storage.delete(frame_path))


# --- heartbeat (hot path) --------------------------------------------------------------------------
def _update_statement(queryset, values):
    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_values(values)
    return query.get_compiler(queryset.db).as_sql()


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

    statement, params = _update_statement(Device.objects.filter(pk=device.pk), values)
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content), formats=["JPEG"]) as image:
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
    return counts
