"""Set-based assignment materialization: one INSERT … SELECT … ON CONFLICT and one DELETE per
deployment, never a Python loop over devices.

A device's rollout bucket is a stable hash of (device id, deployment id) in 0..99, computed in SQL
by `fleet_bucket(a, b)`: a PostgreSQL function (migration 0002) and, on SQLite, the same function
registered on each connection. A device is in the rollout when its bucket is below the current
stage's percent.
"""

import hashlib
import uuid

from django.db import connection
from django.db.backends.signals import connection_created
from django.db.models import Case, F, Func, IntegerField, Q, Value, When
from django.dispatch import receiver
from django.utils import timezone

from devices.label_selector import selector_q
from devices.models import Device, DeviceStatus

from .models import SOURCE_RANK, AssignmentSource, DeviceAssignment

# Devices that can hold an assignment (revoked and archived ones are out of every rollout).
ELIGIBLE_STATUSES = (DeviceStatus.PENDING, DeviceStatus.ACTIVE, DeviceStatus.INACTIVE)

BUCKET_SQL = """
CREATE OR REPLACE FUNCTION fleet_bucket(a uuid, b uuid) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (('x' || substr(md5(a::text || b::text), 1, 8))::bit(32)::bigint % 100)::integer $$;
"""


def bucket(device_id, deployment_id):
    """The same hash as the SQL function, for tests and previews."""
    text = str(uuid.UUID(str(device_id))) + str(uuid.UUID(str(deployment_id)))
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16) % 100  # noqa: S324 - not security


@receiver(connection_created)
def _register_sqlite_bucket(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        connection.connection.create_function("fleet_bucket", 2, bucket, deterministic=True)


class Bucket(Func):
    function = "fleet_bucket"
    output_field = IntegerField()


def targeting_q(*, targeting, group_members=None):
    """Devices named by any targeting term, as a Q, with the rank of the strongest term."""
    terms = []
    if targeting.get("device_ids"):
        terms.append((AssignmentSource.DEVICE, Q(id__in=targeting["device_ids"])))
    if targeting.get("device_group_ids") and group_members is not None:
        terms.append((AssignmentSource.GROUP, Q(id__in=group_members(targeting["device_group_ids"]))))
    if targeting.get("selector") is not None:
        # An empty selector matches every device (When() needs a non-empty condition).
        terms.append((AssignmentSource.SELECTOR, selector_q(targeting["selector"]) or Q(pk__isnull=False)))
    if targeting.get("app_target_ids"):
        terms.append((AssignmentSource.APP_TARGET, Q(app_target_id__in=targeting["app_target_ids"])))
    if not terms:
        return None, None
    any_term = terms[0][1]
    for _, q in terms[1:]:
        any_term |= q
    rank = Case(*[When(q, then=Value(SOURCE_RANK[source])) for source, q in terms], output_field=IntegerField())
    return any_term, rank


def candidates(*, deployment, device_ids=None, group_members=None):
    """((sql, params) selecting (id, rank, bucket), (sql, params) selecting id) for every device the
    deployment targets, or None when its targeting names nothing (a removed target or group)."""
    any_term, rank = targeting_q(targeting=deployment.targeting, group_members=group_members)
    if any_term is None:
        return None
    devices = Device.objects.filter(organization_id=deployment.organization_id, status__in=ELIGIBLE_STATUSES)
    if device_ids is not None:
        devices = devices.filter(id__in=device_ids)
    devices = devices.filter(any_term)
    ranked = devices.annotate(rank=rank, bucket=Bucket(F("id"), Value(deployment.id)))
    return (
        ranked.values_list("id", "rank", "bucket").query.sql_with_params(),
        # A plain id list for the delete: PostgreSQL flattens it into a hash anti-join.
        devices.values_list("id").query.sql_with_params(),
    )


def _db(field_name, value):
    return DeviceAssignment._meta.get_field(field_name).get_db_prep_value(value, connection)


SOURCE_BY_RANK_SQL = "CASE c.rank " + " ".join(
    f"WHEN {rank} THEN '{source}'" for source, rank in SOURCE_RANK.items()
) + " END"


def materialize(*, deployment, percent, device_ids=None, group_members=None):
    """Make the deployment's assignments exactly its targeted devices (optionally only among
    `device_ids`). Returns (upserted, deleted) row counts."""
    table = DeviceAssignment._meta.db_table
    selected = candidates(deployment=deployment, device_ids=device_ids, group_members=group_members)
    if selected is None:
        stale = DeviceAssignment.objects.filter(deployment=deployment)
        if device_ids is not None:
            stale = stale.filter(device_id__in=device_ids)
        return 0, stale.delete()[0]
    (sql, params), (ids_sql, ids_params) = selected
    deployment_id = _db("deployment", deployment.id)
    now = _db("updated_at", timezone.now())
    with connection.cursor() as cursor:
        # Stale rows go first: deleting right after a large insert in the same transaction would
        # be planned from statistics that still describe the table before the insert.
        scope, scope_params = "", []
        if device_ids is not None:
            scope = f" AND device_id IN ({', '.join(['%s'] * len(device_ids))})"
            scope_params = [_db("device", d) for d in device_ids]
        # NOT EXISTS plans as an anti-join; NOT IN (subquery) can degrade to a scan per row.
        cursor.execute(
            f"DELETE FROM {table} WHERE deployment_id = %s{scope}"
            f" AND NOT EXISTS (SELECT 1 FROM ({ids_sql}) AS c WHERE c.id = {table}.device_id)",
            [deployment_id, *scope_params, *ids_params],
        )
        deleted = cursor.rowcount
        cursor.execute(
            f"""
            INSERT INTO {table} (org_id, deployment_id, device_id, source, bucket, in_rollout, status, error, updated_at)
            SELECT %s, %s, c.id, {SOURCE_BY_RANK_SQL}, c.bucket, c.bucket < %s, 'pending', '', %s
            FROM ({sql}) AS c
            WHERE true
            ON CONFLICT (deployment_id, device_id) DO UPDATE
               SET source = excluded.source, in_rollout = excluded.in_rollout, updated_at = excluded.updated_at
             WHERE {table}.source <> excluded.source OR {table}.in_rollout <> excluded.in_rollout
            """,
            [_db("organization", deployment.organization_id), deployment_id, percent, now, *params],
        )
        upserted = cursor.rowcount
    return upserted, deleted


def set_stage(*, deployment, percent):
    """Move every assignment in or out of the rollout for a new stage percent (one UPDATE)."""
    assignments = DeviceAssignment.objects.filter(deployment=deployment)
    now = timezone.now()
    joined = assignments.filter(in_rollout=False, bucket__lt=percent).update(in_rollout=True, updated_at=now)
    left = assignments.filter(in_rollout=True, bucket__gte=percent).update(in_rollout=False, updated_at=now)
    return joined + left
