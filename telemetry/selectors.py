"""Reads: raw readings by keyset cursor, SQL-side aggregation and stats, quarantine, annotations."""

import base64
import binascii
import json
import math
import uuid
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Avg, Count, DateTimeField, F, FloatField, Func, IntegerField, Max, Min, Q, Subquery, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from fleet.errors import Invalid

from .models import Annotation, AnnotationClass, QuarantinedReading, Reading

BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
AGGREGATES = {
    "avg": lambda: Avg("value"),
    "min": lambda: Min("value"),
    "max": lambda: Max("value"),
    "count": lambda: Count("id"),
    "sum": lambda: Sum("value"),
}
MAX_BUCKETS = 10_000
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets align to UTC midnight (and to the hour, minute)


def readings_queryset(*, organization, device=None, metric=None, ts_from=None, ts_to=None, device_ids=None):
    """`device_ids`: a subquery (or list) of device ids, e.g. a device group's members."""
    queryset = Reading.objects.filter(organization=organization)
    if device is not None:
        queryset = queryset.filter(device=device)
    if device_ids is not None:
        queryset = queryset.filter(device_id__in=device_ids)
    if metric:
        queryset = queryset.filter(metric=metric)
    if ts_from is not None:
        queryset = queryset.filter(ts__gte=ts_from)
    if ts_to is not None:
        queryset = queryset.filter(ts__lt=ts_to)
    return queryset


# --- raw readings, newest first, keyset cursor ---------------------------------------------------


def encode_cursor(ts, row_id):
    raw = json.dumps({"ts": ts.isoformat(), "id": str(row_id)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ts = datetime.fromisoformat(data["ts"])
        row_id = uuid.UUID(data["id"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Invalid("Invalid cursor.", field="cursor") from None
    if ts.tzinfo is None:
        raise Invalid("Invalid cursor.", field="cursor")
    return ts, row_id


def readings_page(*, organization, device=None, metric=None, ts_from=None, ts_to=None, limit=100, cursor=None):
    """One page, newest first, and the cursor of the next page (None at the end).

    The cursor is the (ts, id) of the last row returned, so rows inserted meanwhile neither
    shift nor repeat the pages that follow (keyset pagination).
    """
    queryset = readings_queryset(organization=organization, device=device, metric=metric, ts_from=ts_from, ts_to=ts_to)
    if cursor:
        ts, row_id = decode_cursor(cursor)
        queryset = queryset.filter(Q(ts__lt=ts) | Q(ts=ts, id__lt=row_id))
    rows = list(queryset.select_related("device").order_by("-ts", "-id")[: limit + 1])
    next_cursor = encode_cursor(rows[limit - 1].ts, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


# --- aggregation ---------------------------------------------------------------------------------


def _bucket_expression(seconds):
    if connection.vendor == "postgresql":
        return Func(
            Value(timedelta(seconds=seconds)),
            F("ts"),
            Value(BUCKET_ORIGIN, output_field=DateTimeField()),
            function="date_bin",
            output_field=DateTimeField(),
        )
    # Embedded default (SQLite): epoch arithmetic, turned back into datetimes in Python.
    return RawSQL(
        'CAST(strftime(\'%%s\', "telemetry_reading"."ts") AS INTEGER) / %s * %s',
        (seconds, seconds),
        output_field=IntegerField(),
    )


def readings_aggregated(*, organization, device, metric, ts_from, ts_to, bucket, aggregates, device_ids=None):
    """Buckets of `bucket` width over [ts_from, ts_to), computed in SQL (date_bin on PostgreSQL)."""
    seconds = BUCKETS[bucket]
    if math.ceil((ts_to - ts_from).total_seconds() / seconds) > MAX_BUCKETS:
        raise Invalid(f"The range spans more than {MAX_BUCKETS} buckets of {bucket}: use a wider bucket.", field="bucket")
    queryset = (
        readings_queryset(
            organization=organization, device=device, metric=metric, ts_from=ts_from, ts_to=ts_to, device_ids=device_ids
        )
        .order_by()
        .annotate(bucket=_bucket_expression(seconds))
        .values("bucket")
        .annotate(**{name: AGGREGATES[name]() for name in aggregates})
        .order_by("bucket")
    )
    buckets = []
    for row in queryset:
        start = row["bucket"]
        if isinstance(start, int):
            start = datetime.fromtimestamp(start, tz=UTC)
        buckets.append({"ts": start, **{name: row[name] for name in aggregates}})
    return buckets


def readings_stats(*, organization, device, metric=None, ts_from=None, ts_to=None, device_ids=None):
    """count, min, max, avg, first_ts, last_ts and last_value in one SQL statement."""
    queryset = readings_queryset(
        organization=organization, device=device, metric=metric, ts_from=ts_from, ts_to=ts_to, device_ids=device_ids
    )
    last = queryset.order_by("-ts", "-id").values("value")[:1]
    return queryset.order_by().aggregate(
        count=Coalesce(Count("id"), 0),
        min=Min("value"),
        max=Max("value"),
        avg=Avg("value"),
        first_ts=Min("ts"),
        last_ts=Max("ts"),
        last_value=Max(Subquery(last, output_field=FloatField())),
    )


# --- quarantine, annotations -------------------------------------------------------------------


def quarantine_queryset(*, organization):
    return QuarantinedReading.objects.filter(organization=organization).select_related("device").order_by("-received_at", "id")


def annotation_class_queryset(*, organization):
    return AnnotationClass.objects.filter(organization=organization).order_by("name", "id")


def annotation_queryset(*, organization):
    return (
        Annotation.objects.filter(organization=organization)
        .select_related("device", "annotation_class")
        .order_by("-ts_from", "id")
    )


def annotations_overlapping(queryset, *, ts_from=None, ts_to=None):
    """Annotations whose [ts_from, ts_to or ts_from] interval meets [from, to)."""
    if ts_to is not None:
        queryset = queryset.filter(ts_from__lt=ts_to)
    if ts_from is not None:
        queryset = queryset.filter(Q(ts_to__gte=ts_from) | Q(ts_to__isnull=True, ts_from__gte=ts_from))
    return queryset


def group_member_ids(*, organization, ref):
    """(group, a subquery of its member device ids) for a device group named by UUID or slug, or (None, None)."""
    from devices import selectors as device_selectors

    group = device_selectors.group_by_ref(organization=organization, ref=ref)
    if group is None:
        return None, None
    return group, device_selectors.group_member_ids(organization=organization, group_ids=[group.id])


def device_by_ref(*, organization, ref):
    """The organization's device named by UUID `id` or `device_id`, or None."""
    from devices.selectors import device_queryset

    queryset = device_queryset(organization=organization)
    try:
        as_uuid = uuid.UUID(str(ref))
    except ValueError:
        return queryset.filter(device_id=ref).first()
    return queryset.filter(Q(id=as_uuid) | Q(device_id=ref)).order_by("-device_id").first()
