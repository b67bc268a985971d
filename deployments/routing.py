"""Routing telemetry: SDKs report where each inference ran (local or cloud), with which variant and
how fast. Ingest is one bulk INSERT per batch; decisions and stats are SQL over the table.

First request: apps_catalog's InferenceRequestLog stays the single source of truth for
GET /apps/{slug}/first-request. Ingest calls apps_catalog.services.inference_request_record once per
app whose log is still empty (the batch's earliest event), so the quickstart indicator flips on the
first routed request, local or cloud, without a log row per event.
"""

import datetime
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Aggregate, Count, FloatField, Q
from django.utils import timezone

from apps_catalog import services as catalog_services
from apps_catalog.models import App, InferenceRequestLog, ModelCapability, ModelVariant
from apps_catalog.selectors import visible_to
from devices.models import Device
from fleet.api.views import is_uuid

from .models import Route, RoutingEvent

MAX_BATCH = 1000
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
MAX_CLOCK_SKEW = timedelta(minutes=10)
MAX_AGE = timedelta(days=30)


def _error(index, field, message):
    return {"index": index, "fields": {field: [message]}}


@transaction.atomic
def routing_events_ingest(*, organization, events, app=None, device=None, now=None):
    """Validate each event, bulk-insert the good ones. Returns {accepted, rejected, errors}.

    `app`: a publishable key may only report for its own app. `device`: a device token may only
    report for itself (device_id defaults to it) and, once linked to an app, for that app. Other callers (API keys) may report for any app
    and device of the organization.
    """
    now = now or timezone.now()
    apps = {a.slug: a for a in App.objects.filter(organization=organization, slug__in={
        str(e.get("app")) for e in events if isinstance(e, dict) and e.get("app")})}
    capabilities = {c.key: c for c in ModelCapability.objects.filter(key__in={
        str(e.get("capability")) for e in events if isinstance(e, dict) and e.get("capability")})}
    variant_ids = {str(e.get("variant_id")) for e in events if isinstance(e, dict) and is_uuid(e.get("variant_id"))}
    variants = {str(v.id): v for v in ModelVariant.objects.filter(visible_to(organization), id__in=variant_ids)
                .select_related("model")} if variant_ids else {}
    device_refs = {str(e.get("device_id")) for e in events if isinstance(e, dict) and e.get("device_id")}
    devices = {}
    if device_refs and device is None:
        uuids = [r for r in device_refs if is_uuid(r)]
        for d in Device.objects.filter(Q(device_id__in=device_refs) | Q(id__in=uuids), organization=organization):
            devices[d.device_id] = d
            devices[str(d.id)] = d

    rows, errors = [], []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            errors.append(_error(index, "non_field_errors", "Each event is an object."))
            continue
        item_app = apps.get(str(event.get("app") or ""))
        if item_app is None:
            errors.append(_error(index, "app", f"Unknown app {event.get('app')!r}."))
            continue
        if app is not None and item_app.id != app.id:
            errors.append(_error(index, "app", "This key can only report for its own app."))
            continue
        if device is not None and getattr(device, "app_id", None) and item_app.id != device.app_id:
            errors.append(_error(index, "app", "A device can only report for the app it registered for."))
            continue
        capability = capabilities.get(str(event.get("capability") or ""))
        if capability is None:
            errors.append(_error(index, "capability", f"Unknown capability {event.get('capability')!r}."))
            continue
        route = event.get("route")
        if route not in Route.values:
            errors.append(_error(index, "route", "route is local or cloud."))
            continue
        ref = event.get("device_id")
        item_device = None
        if device is not None:
            if ref not in (None, "") and str(ref) not in (device.device_id, str(device.id)):
                errors.append(_error(index, "device_id", "A device can only report for itself."))
                continue
            item_device, ref = device, device.device_id
        elif ref not in (None, ""):
            item_device = devices.get(str(ref))
        if ref is not None and (not isinstance(ref, str) or len(ref) > 255):
            errors.append(_error(index, "device_id", "device_id is a string of at most 255 characters."))
            continue
        variant = None
        if event.get("variant_id") not in (None, ""):
            variant = variants.get(str(event["variant_id"]))
            if variant is None or variant.model.capability_id != capability.id:
                errors.append(_error(index, "variant_id", f"Unknown {capability.key} variant."))
                continue
        latency = event.get("latency_ms")
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0
                                    or latency > 3_600_000):
            errors.append(_error(index, "latency_ms", "latency_ms is a number between 0 and 3600000."))
            continue
        success = event.get("success", True)
        if not isinstance(success, bool):
            errors.append(_error(index, "success", "success is a boolean."))
            continue
        reason = event.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > 200:
            errors.append(_error(index, "reason", "reason is a string of at most 200 characters."))
            continue
        ts = _timestamp(event.get("ts"), now)
        if ts is None:
            errors.append(_error(index, "ts", "ts is an ISO 8601 time within the last 30 days, not in the future."))
            continue
        rows.append(RoutingEvent(
            organization_id=organization.id,
            app=item_app,
            capability=capability,
            device=item_device,
            device_identifier=ref or "",
            route=route,
            variant=variant,
            latency_ms=latency,
            success=success,
            reason=reason,
            ts=ts,
            received_at=now,
        ))
    RoutingEvent.objects.bulk_create(rows, batch_size=MAX_BATCH)
    _first_requests(organization=organization, rows=rows)
    return {"accepted": len(rows), "rejected": len(errors), "errors": errors}


def _timestamp(value, now):
    from django.utils.dateparse import parse_datetime

    if value in (None, ""):
        return now
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, datetime.UTC)
    if parsed > now + MAX_CLOCK_SKEW or parsed < now - MAX_AGE:
        return None
    return parsed


def _first_requests(*, organization, rows):
    """Feed InferenceRequestLog with each app's first request (one query to find the apps without)."""
    earliest = {}
    for row in rows:
        if row.app_id not in earliest or row.ts < earliest[row.app_id].ts:
            earliest[row.app_id] = row
    if not earliest:
        return
    seen = set(InferenceRequestLog.objects.filter(organization=organization, app_id__in=list(earliest))
               .values_list("app_id", flat=True).distinct())
    for app_id, row in earliest.items():
        if app_id not in seen:
            catalog_services.inference_request_record(
                organization=organization, app=row.app, via=row.route, received_at=row.ts
            )


# --- reads -------------------------------------------------------------------------------------------------
def decision_queryset(*, organization, app=None):
    events = RoutingEvent.objects.filter(organization=organization).select_related("app", "capability")
    if app is not None:
        events = events.filter(app=app)
    return events.order_by("-ts", "-id")


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: percentile_cont(p) WITHIN GROUP (ORDER BY expr)."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile, **extra):
        super().__init__(expression, percentile=float(percentile), **extra)


def percentile(values, p):
    """percentile_cont in Python (linear interpolation between the closest ranks) for sorted values."""
    if not values:
        return None
    position = (len(values) - 1) * p
    lower = int(position)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def _grouped(events, field):
    """[{<field>, count, errors, p50, p95}] grouped by `field`: one query on PostgreSQL; on SQLite one
    aggregate query plus one ordered latency scan (percentiles computed in Python)."""
    base = events.values(field).order_by(field)
    annotations = {"count": Count("pk"), "errors": Count("pk", filter=Q(success=False))}
    if connection.vendor == "postgresql":
        annotations["p50"] = PercentileCont("latency_ms", 0.5)  # NULL latencies are ignored
        annotations["p95"] = PercentileCont("latency_ms", 0.95)
        return list(base.annotate(**annotations))
    rows = list(base.annotate(**annotations))
    latencies = {}
    for key, value in events.filter(latency_ms__isnull=False).order_by(field, "latency_ms").values_list(field, "latency_ms"):
        latencies.setdefault(key, []).append(value)
    for row in rows:
        values = latencies.get(row[field], [])
        row["p50"], row["p95"] = percentile(values, 0.5), percentile(values, 0.95)
    return rows


def _round(value):
    return None if value is None else round(float(value), 2)


def routing_stats(*, organization, window="24h", app=None, now=None):
    now = now or timezone.now()
    since = now - WINDOWS[window]
    events = RoutingEvent.objects.filter(organization=organization, ts__gte=since, ts__lte=now)
    if app is not None:
        events = events.filter(app=app)
    by_route = _grouped(events, "route")
    by_variant = _grouped(events, "variant_id")
    total = sum(r["count"] for r in by_route)
    errors = sum(r["errors"] for r in by_route)
    local = sum(r["count"] for r in by_route if r["route"] == Route.LOCAL)

    def shape(row, key, name):
        return {
            name: (str(row[key]) if row[key] is not None else None),
            "count": row["count"],
            "errors": row["errors"],
            "error_rate": round(row["errors"] / row["count"], 4) if row["count"] else 0.0,
            "p50_latency_ms": _round(row["p50"]),
            "p95_latency_ms": _round(row["p95"]),
        }

    return {
        "window": window,
        "since": since,
        "until": now,
        "total": total,
        "local": local,
        "cloud": total - local,
        "local_share": round(local / total, 4) if total else 0.0,
        "errors": errors,
        "error_rate": round(errors / total, 4) if total else 0.0,
        "by_route": [shape(r, "route", "route") for r in by_route],
        "by_variant": [shape(r, "variant_id", "variant_id") for r in by_variant],
    }


def variant_error_rate(*, organization, variant, since, app=None):
    """(events, error rate) of routing events that ran `variant` since `since` (health gates)."""
    events = RoutingEvent.objects.filter(organization=organization, variant=variant, ts__gte=since)
    if app is not None:  # an App or its id
        events = events.filter(app=app)
    counts = events.aggregate(n=Count("pk"), failed=Count("pk", filter=Q(success=False)))
    return counts["n"], (counts["failed"] / counts["n"] if counts["n"] else 0.0)
