"""Writes: readings ingest (set-based insert + quarantine), quarantine release, annotations."""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from devices.selectors import device_queryset
from fleet.errors import Conflict, Invalid, PayloadTooLarge

from . import validation
from .models import Annotation, AnnotationClass, QuarantinedReading, Reading

REASON_MAX = 500

# One statement for the whole batch; duplicates of (device, metric, ts), in the table or within
# the batch, are skipped by ON CONFLICT DO NOTHING (first write wins) and counted as duplicates.
INSERT_UNNEST = """
WITH inserted AS (
    INSERT INTO telemetry_reading (id, org_id, device_id, metric, ts, value)
    SELECT gen_random_uuid(), %s, u.device_id, u.metric, u.ts, u.value
    FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::float8[]) AS u(device_id, metric, ts, value)
    ON CONFLICT (device_id, metric, ts) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    errors: list = field(default_factory=list)


def readings_insert(*, organization, rows):
    """Insert valid (device, metric, ts, value) rows; returns how many were new."""
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                INSERT_UNNEST,
                [
                    organization.id,
                    [row.device.id for row in rows],
                    [row.metric for row in rows],
                    [row.ts for row in rows],
                    [row.value for row in rows],
                ],
            )
            return cursor.fetchone()[0]
    # Embedded default (SQLite): bulk insert ignoring conflicts, counted before and after.
    existing = Reading.objects.filter(organization=organization)
    before = existing.count()
    Reading.objects.bulk_create(
        [
            Reading(organization=organization, device=row.device, metric=row.metric, ts=row.ts, value=row.value)
            for row in rows
        ],
        ignore_conflicts=True,
        batch_size=500,
    )
    return existing.count() - before


def _devices_for(*, organization, items):
    ids, names = validation.device_refs(items)
    if not ids and not names:
        return {}, {}
    devices = list(device_queryset(organization=organization).filter(Q(id__in=ids) | Q(device_id__in=names)))
    return {d.id: d for d in devices}, {d.device_id: d for d in devices}


@transaction.atomic
def readings_ingest(*, organization, items, device=None, now=None):
    """Store valid items, quarantine the others; nothing is dropped.

    `device`: the calling device (device tokens report only their own readings); otherwise each
    item names its device by UUID or device_id, resolved in one query for the whole batch.
    """
    if not isinstance(items, list):
        raise Invalid("Expected a list of readings.", field="readings")
    limit = settings.READINGS_BATCH_MAX
    if len(items) > limit:
        raise PayloadTooLarge(f"At most {limit} readings per request ({len(items)} sent).")
    now = now or timezone.now()
    by_id, by_name = {}, {}
    if device is None:
        by_id, by_name = _devices_for(organization=organization, items=items)
    result = IngestResult()
    valid, invalid = [], []
    for index, item in enumerate(items):
        checked = validation.check_item(
            index, item, own_device=device, devices_by_id=by_id, devices_by_name=by_name
        )
        (valid if checked.ok else invalid).append((checked, item))
    result.accepted = readings_insert(organization=organization, rows=[c for c, _ in valid])
    result.duplicates = len(valid) - result.accepted
    if invalid:
        QuarantinedReading.objects.bulk_create(
            [
                QuarantinedReading(
                    organization=organization,
                    device=checked.device,
                    raw=item,
                    reason=checked.reason[:REASON_MAX],
                    received_at=now,
                )
                for checked, item in invalid
            ],
            batch_size=1000,
        )
    result.quarantined = len(invalid)
    result.errors = [{"index": checked.index, "reason": checked.reason} for checked, _ in invalid]
    return result


@transaction.atomic
def quarantine_release(*, item, corrected=None):
    """Re-validate a quarantined item (or its corrected version); store it and drop the quarantine row.

    Returns "accepted" or "duplicate"; still invalid → Invalid (400) with the reason.
    """
    organization = item.organization
    raw = item.raw if corrected is None else corrected
    by_id, by_name = _devices_for(organization=organization, items=[raw])
    checked = validation.check_item(0, raw, default_device=item.device, devices_by_id=by_id, devices_by_name=by_name)
    if not checked.ok:
        name, _, message = checked.reason.partition(": ")
        raise Invalid(f"Still invalid: {checked.reason}", field=name if message else "reading")
    inserted = readings_insert(organization=organization, rows=[checked])
    item.delete()
    return "accepted" if inserted else "duplicate"


@transaction.atomic
def quarantine_delete(*, item):
    item.delete()


# --- annotations -------------------------------------------------------------------------------


@transaction.atomic
def annotation_class_create(*, organization, name, color):
    if AnnotationClass.objects.filter(organization=organization, name=name).exists():
        raise Conflict(f"An annotation class named {name!r} already exists.", fields={"name": ["Already exists."]})
    return AnnotationClass.objects.create(organization=organization, name=name, color=color)


@transaction.atomic
def annotation_class_update(*, annotation_class, **changes):
    name = changes.get("name")
    if (
        name is not None
        and name != annotation_class.name
        and AnnotationClass.objects.filter(organization_id=annotation_class.organization_id, name=name).exists()
    ):
        raise Conflict(f"An annotation class named {name!r} already exists.", fields={"name": ["Already exists."]})
    for key, value in changes.items():
        setattr(annotation_class, key, value)
    annotation_class.save()
    return annotation_class


def annotation_class_delete(*, annotation_class):
    try:
        with transaction.atomic():
            annotation_class.delete()
    except (ProtectedError, IntegrityError):
        raise Conflict("This annotation class is used by annotations; delete them first.") from None


def _check_range(ts_from, ts_to):
    if ts_to is not None and ts_from is not None and ts_to < ts_from:
        raise Invalid("ts_to must not be before ts_from.", field="ts_to")


@transaction.atomic
def annotation_create(*, organization, device, annotation_class, ts_from, ts_to=None, text="", created_by=""):
    _check_range(ts_from, ts_to)
    return Annotation.objects.create(
        organization=organization,
        device=device,
        annotation_class=annotation_class,
        ts_from=ts_from,
        ts_to=ts_to,
        text=text,
        created_by=created_by[:200],
    )


@transaction.atomic
def annotation_update(*, annotation, **changes):
    ts_from = changes.get("ts_from", annotation.ts_from)
    ts_to = changes["ts_to"] if "ts_to" in changes else annotation.ts_to
    _check_range(ts_from, ts_to)
    for key, value in changes.items():
        setattr(annotation, key, value)
    annotation.save()
    return annotation


@transaction.atomic
def annotation_delete(*, annotation):
    annotation.delete()
