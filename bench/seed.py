"""Generate realistic fleets fast with set-based SQL (PostgreSQL): generate_series and unnest,
never one ORM object per row. Run inside the organization's context (rls.organization_context)."""

import time
from datetime import UTC, datetime, timedelta

from django.db import connection

from devices.models import DEFAULT_HEARTBEAT_INTERVAL_S, OFFLINE_FACTOR, STALE_FACTOR, Connectivity, Device, DeviceToken
from fleet.tenancy import credentials

SITES = 50
PLATFORMS = ("android", "ios", "linux", "python")
TIERS = ("edge", "gold", "silver")


def _defaults(model, explicit):
    """Every other column gets its model default, so the statement follows the model as it grows."""
    columns, params = [], []
    for field in model._meta.concrete_fields:
        if field.column in explicit:
            continue
        columns.append(connection.ops.quote_name(field.column))
        params.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, params


def seed_devices(*, organization, count, prefix="bench"):
    """Insert `count` devices with site/tier labels spread evenly; returns the seconds taken.

    A fleet that has been running: each device last heartbeated an hour ago and is offline now, with
    nothing waiting for it. Its next heartbeat is a reconnection, not a new device's first (which
    would also look for commands and training rounds already waiting)."""
    last_seen = "now() - interval '1 hour'"
    interval = f"interval '{DEFAULT_HEARTBEAT_INTERVAL_S} seconds'"
    explicit = {
        "id": "gen_random_uuid()",
        "org_id": "%s",
        "device_id": f"'{prefix}-' || lpad(i::text, 7, '0')",
        "name": f"'{prefix.title()} ' || i",
        "platform": "(ARRAY[" + ",".join(f"'{p}'" for p in PLATFORMS) + f"])[1 + i %% {len(PLATFORMS)}]",
        "labels": f"jsonb_build_object('site', 'site-' || (i %% {SITES}), 'tier', (ARRAY['edge','gold','silver'])[1 + i %% 3])",
        "hardware": "jsonb_build_object('ram', 8589934592, 'cpu_cores', 8)",
        # One registration a minute, newest first: a fleet enrolled over time. (Identical timestamps
        # would make every newest-first page sort all the matching devices.)
        "created_at": f"{last_seen} - i * interval '1 minute'",
        "updated_at": "now()",
        "last_heartbeat": last_seen,
        "connectivity_status": f"'{Connectivity.OFFLINE.value}'",
        "stale_at": f"{last_seen} + {STALE_FACTOR} * {interval}",
        "offline_at": f"{last_seen} + {OFFLINE_FACTOR} * {interval}",
        "attention": "0",
    }
    columns, params = _defaults(Device, explicit)
    names = [connection.ops.quote_name(c) for c in explicit] + columns
    values = list(explicit.values()) + ["%s"] * len(params)
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Device._meta.db_table} ({', '.join(names)}) "
            f"SELECT {', '.join(values)} FROM generate_series(1, %s) AS i",
            [organization.id, *params, count],
        )
    return time.perf_counter() - start


def seed_tokens(*, organization, limit):
    """A device token for the first `limit` devices; returns [(device uuid, device_id, secret)]."""
    rows = list(
        Device.objects.filter(organization=organization).order_by("device_id").values_list("id", "device_id")[:limit]
    )
    secrets = [credentials.generate(prefix=DeviceToken.PREFIX) for _ in rows]
    explicit = {"id": "gen_random_uuid()", "org_id": "%s", "device_id": "t.device", "prefix": "t.prefix",
                "secret_hash": "t.hash", "created_at": "now()"}
    columns, params = _defaults(DeviceToken, explicit)
    names = [connection.ops.quote_name(c) for c in explicit] + columns
    values = list(explicit.values()) + ["%s"] * len(params)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DeviceToken._meta.db_table} ({', '.join(names)}) SELECT {', '.join(values)} "
            "FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS t(device, prefix, hash)",
            [
                organization.id,
                *params,
                [r[0] for r in rows],
                [credentials.display_prefix(secret=s, prefix=DeviceToken.PREFIX) for s in secrets],
                [credentials.hash_secret(s) for s in secrets],
            ],
        )
    return [(device_uuid, device_id, secret) for (device_uuid, device_id), secret in zip(rows, secrets, strict=True)]


def seed_readings(*, organization, per_device, metric="temperature_c", start=None, devices_limit=None):
    """`per_device` readings a minute apart for each device (one INSERT … SELECT)."""
    from telemetry.models import Reading

    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    explicit = {"id": "gen_random_uuid()", "org_id": "%s", "device_id": "d.id", "metric": "%s",
                "ts": "%s::timestamptz + make_interval(mins => g)", "value": "20 + (g %% 97) / 10.0"}
    columns, params = _defaults(Reading, explicit)
    names = [connection.ops.quote_name(c) for c in explicit] + columns
    values = list(explicit.values()) + ["%s"] * len(params)
    limit = "LIMIT %s" if devices_limit else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Reading._meta.db_table} ({', '.join(names)}) SELECT {', '.join(values)} "
            f"FROM (SELECT id FROM {Device._meta.db_table} WHERE org_id = %s ORDER BY device_id {limit}) AS d "
            "CROSS JOIN generate_series(1, %s) AS g ON CONFLICT DO NOTHING",
            [organization.id, metric, start, *params, organization.id, *([devices_limit] if devices_limit else []), per_device],
        )
        return cursor.rowcount


def seed_groups(*, organization, count):
    """`count` dynamic groups, one per site label (each materialized by one set-based statement)."""
    from devices import services as device_services
    from fleet.activity.services import SYSTEM

    for index in range(count):
        device_services.device_group_create(
            organization=organization, actor=SYSTEM, name=f"Site {index}", slug=f"site-{index}",
            selector={"match_labels": {"site": f"site-{index % SITES}"}},
        )


def reading_window(*, per_device, start=None):
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    return start, start + timedelta(minutes=per_device + 1)


def analyze(*, tables=None):
    """Refresh planner statistics after a bulk load. Row-level-security predicates are estimated
    from them: without, a fresh 100k-device table is planned as 13 rows and a join turns into a
    nested loop (minutes instead of milliseconds). Needs the owner role."""
    from fleet.tenancy import dbroles

    tables = tables or ["devices_device", "devices_devicetoken", "telemetry_reading", "deployments_deviceassignment"]
    with dbroles.as_owner() as conn, conn.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {conn.ops.quote_name(table)}")
