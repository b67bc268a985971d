"""Materialized group membership: set-based SQL that keeps `DeviceGroupMembership` exact.

Dynamic groups: the wanted (group, device) pairs are the devices in scope that are neither revoked
nor archived, each paired with the groups whose selector (compiled by `label_selector.selector_q`)
it matches; the devices are read once whatever the number of groups. The leaving memberships are
those whose device no longer matches (each looks its device up by primary key); the joining pairs
are the wanted ones not yet present (NOT EXISTS answered by the (group, device) primary key). Both
plans stay linear whatever the statistics say: a `NOT IN (subquery)` too large for work_mem, or an
anti-join against the derived wanted pairs misestimated as one row, re-scans the subquery per row.

PostgreSQL applies them in one statement that re-points the row of a device moving between groups
(UPDATE of group_id) and deletes or inserts only the rest; elsewhere a DELETE and an INSERT … SELECT
(ON CONFLICT DO NOTHING for concurrent writers). member_count moves by the per-group deltas of the
rows actually changed, in one UPDATE. No Python loop over devices anywhere.

Runs inside the caller's transaction, so membership is exact at every commit.
"""

import functools
import operator
import uuid
from collections import Counter

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    UUIDField,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact
from django.utils import timezone

from fleet.tenancy.models import Organization

from .label_selector import reads_keys, selector_q
from .models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceStatus,
    GroupKind,
    MembershipReason,
)

NOT_MEMBERS = (DeviceStatus.REVOKED, DeviceStatus.ARCHIVED)
# Above this many device ids, the refresh covers the whole organization instead of an id list
# (SQLite caps bound variables; one full pass is also cheaper than a huge IN list).
ID_LIST_MAX = 2000


def eligible_devices(*, organization):
    """Devices that can be members of dynamic groups."""
    return Device.objects.filter(organization=organization).exclude(status__in=NOT_MEMBERS).order_by()


def _sql(queryset):
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def _prep(model, field, value):
    return model._meta.get_field(field).get_db_prep_value(value, connection)


def _wanted(*, organization, groups, device_ids):
    """SQL for the (gid, did) pairs the dynamic `groups` want among the devices in scope.

    One group: its selector filters the devices (an index on labels can serve it). Several: the
    devices are read once, with one boolean per group, and each group picks its rows from that
    result, so the cost follows the number of devices, not devices x groups.
    """
    devices = eligible_devices(organization=organization)
    if device_ids is not None:
        devices = devices.filter(id__in=device_ids)
    if len(groups) == 1:
        [group] = groups
        pairs = devices.filter(selector_q(group.selector or {})).annotate(
            gid=Value(group.id, output_field=UUIDField()), did=F("id")
        )
        return _sql(pairs.values_list("gid", "did"))
    hits = {f"g{index}": _matches(group) for index, group in enumerate(groups)}
    scan_sql, scan_params = _sql(devices.annotate(**hits).values_list("id", *hits))
    picks = " UNION ALL ".join(f"SELECT %s AS gid, s.did AS did FROM s WHERE s.{name}" for name in hits)
    sql = f"WITH s (did, {', '.join(hits)}) AS ({scan_sql}) {picks}"
    return sql, [*scan_params, *(_prep(DeviceGroup, "id", group.id) for group in groups)]


def _matches(group):
    q = selector_q(group.selector or {})
    return ExpressionWrapper(q, output_field=BooleanField()) if q else Value(True)


def _unwanted(*, organization, groups, device_ids):
    """SQL for the memberships (group, device) of `groups` whose device is no longer eligible or no
    longer matches its group's selector. Each membership looks its device up by primary key, so the
    plan stays linear whatever the statistics estimate (an anti-join against the wanted pairs became
    a nested loop over both sets when a fresh table was estimated at one row)."""
    still_matches = functools.reduce(operator.or_, [
        Q(Exact(OuterRef("group_id"), Value(group.id, output_field=UUIDField()))) & selector_q(group.selector or {})
        for group in groups
    ])
    device = eligible_devices(organization=organization).filter(Q(id=OuterRef("device_id")) & still_matches)
    rows = DeviceGroupMembership.objects.filter(organization=organization, group_id__in=[group.id for group in groups])
    if device_ids is not None:
        rows = rows.filter(device_id__in=device_ids)
    return _sql(rows.filter(~Exists(device)).order_by().values("group_id", "device_id"))


def refresh_dynamic(*, organization, groups, device_ids=None):
    """Bring the memberships of dynamic `groups` up to date for `device_ids` (None: every device).

    Returns the set of group ids whose membership changed (their member_count is already updated).
    """
    groups = [group for group in groups if group.kind == GroupKind.DYNAMIC]
    if not groups:
        return set()
    if device_ids is not None:
        device_ids = list(device_ids)
        if not device_ids:
            return set()
        if len(device_ids) > ID_LIST_MAX:
            device_ids = None
    unwanted_sql, unwanted_params = _unwanted(organization=organization, groups=groups, device_ids=device_ids)
    wanted_sql, wanted_params = _wanted(organization=organization, groups=groups, device_ids=device_ids)
    # The wanted pairs are the outer side; the (group, device) primary key answers NOT EXISTS.
    joining = (
        f"SELECT w.gid, w.did FROM ({wanted_sql}) w "
        f"WHERE NOT EXISTS (SELECT 1 FROM {TABLE} m WHERE m.group_id = w.gid AND m.device_id = w.did)"
    )
    row = (_prep(DeviceGroupMembership, "organization", organization.id), MembershipReason.SELECTOR,
           _prep(DeviceGroupMembership, "created_at", timezone.now()))
    apply = _apply_moving if connection.vendor == "postgresql" else _apply
    deltas = apply(unwanted=(unwanted_sql, unwanted_params), joining=(joining, wanted_params), row=row)
    count_add(deltas=deltas)
    return set(deltas)


TABLE = DeviceGroupMembership._meta.db_table  # a plain name: needs no quoting on either database
INSERT = f"INSERT INTO {TABLE} (org_id, group_id, device_id, reason, created_at) "
PAIRING_WORK_MEM = "32MB"


def _apply(*, unwanted, joining, row):
    """DELETE the unwanted rows, then INSERT the missing pairs; {group id: rows added - rows removed}.
    `row`: the new rows' (org_id, reason, created_at)."""
    unwanted_sql, unwanted_params = unwanted
    joining_sql, joining_params = joining
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {TABLE} WHERE (group_id, device_id) IN "
            f"(SELECT u.group_id, u.device_id FROM ({unwanted_sql}) u) RETURNING group_id",
            unwanted_params,
        )
        deleted = Counter(_from_db(group_id) for group_id, in cursor.fetchall())
        cursor.execute(
            # WHERE true: SQLite would read ON CONFLICT as a join's ON without a WHERE before it.
            f"{INSERT} SELECT %s, j.gid, j.did, %s, %s FROM ({joining_sql}) j WHERE true "
            "ON CONFLICT (group_id, device_id) DO NOTHING RETURNING group_id",
            [*row, *joining_params],
        )
        deltas = Counter(_from_db(group_id) for group_id, in cursor.fetchall())
    deltas.update({group_id: -n for group_id, n in deleted.items()})
    return deltas


def _apply_moving(*, unwanted, joining, row):
    """PostgreSQL, one statement: a device that leaves one group and joins another keeps its
    membership row, re-pointed to the new group (UPDATE); only the rest are deleted or inserted.

    Why: a label value change (site-3 to site-4) moves every device it touches between two groups,
    and an inserted row costs three foreign-key checks at commit (device, group, organization), an
    UPDATE of group_id only the group's (docs/performance.md). Leaving rows and joining pairs are
    paired per device by rank. The statement counts per group in SQL, so a 100k-row change sends
    back one row per group."""
    unwanted_sql, unwanted_params = unwanted
    joining_sql, joining_params = joining
    _, _, created_at = row
    statement = (
        f"WITH leaving AS (SELECT u.group_id, u.device_id, "
        f"row_number() OVER (PARTITION BY u.device_id ORDER BY u.group_id) AS rank FROM ({unwanted_sql}) u), "
        f"joining AS (SELECT j.gid, j.did, row_number() OVER (PARTITION BY j.did ORDER BY j.gid) AS rank "
        f"FROM ({joining_sql}) j), "
        # A full join on equalities can only be hashed or merged: linear whatever the estimates (an
        # anti-join against a CTE could become a nested loop, one scan of the CTE per row).
        "pairs AS (SELECT l.group_id AS left_gid, l.device_id AS left_did, j.gid, j.did FROM leaving l "
        "FULL JOIN joining j ON j.did = l.device_id AND j.rank = l.rank), "
        f"moved AS (UPDATE {TABLE} m SET group_id = p.gid, created_at = %s FROM pairs p "
        "WHERE m.group_id = p.left_gid AND m.device_id = p.left_did AND p.gid IS NOT NULL "
        "RETURNING p.left_gid, p.gid), "
        f"deleted AS (DELETE FROM {TABLE} m USING pairs p "
        "WHERE m.group_id = p.left_gid AND m.device_id = p.left_did AND p.gid IS NULL "
        "RETURNING p.left_gid), "
        f"inserted AS ({INSERT} SELECT %s, p.gid, p.did, %s, %s FROM pairs p WHERE p.left_gid IS NULL "
        "ON CONFLICT (group_id, device_id) DO NOTHING RETURNING group_id) "
        "SELECT group_id, sum(delta) FROM (SELECT gid AS group_id, 1 AS delta FROM moved "
        "UNION ALL SELECT left_gid, -1 FROM moved UNION ALL SELECT left_gid, -1 FROM deleted "
        "UNION ALL SELECT group_id, 1 FROM inserted) changes GROUP BY group_id"
    )
    with connection.cursor() as cursor:
        # The pairing sorts and hashes every changed membership; at 100,000 devices the default 4MB
        # work_mem sends them to disk. Raised for this statement only.
        cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [PAIRING_WORK_MEM])
        [previous, _] = cursor.fetchone()
        cursor.execute(statement, [*unwanted_params, *joining_params, created_at, *row])
        deltas = Counter({_from_db(group_id): delta for group_id, delta in cursor.fetchall()})
        cursor.execute("SELECT set_config('work_mem', %s, true)", [previous])
    return deltas


def count_add(*, deltas):
    """member_count += delta for each group, in one UPDATE. The deltas come from the rows the
    statements actually inserted or deleted (RETURNING), so they are exact under concurrency too:
    a row raced in by another transaction is returned by only one of them."""
    deltas = {group_id: delta for group_id, delta in deltas.items() if delta}
    if not deltas:
        return
    DeviceGroup.objects.filter(id__in=list(deltas)).update(
        member_count=F("member_count")
        + Case(*[When(id=group_id, then=Value(delta)) for group_id, delta in deltas.items()],
               default=Value(0), output_field=IntegerField())
    )


def _from_db(value):
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def recount(*, group_ids):
    """member_count = the number of membership rows, for these groups (one UPDATE)."""
    group_ids = list(group_ids)
    if not group_ids:
        return
    counts = (
        DeviceGroupMembership.objects.filter(group_id=OuterRef("pk"))
        .order_by()
        .values("group_id")
        .annotate(n=Count("device_id"))
        .values("n")
    )
    DeviceGroup.objects.filter(id__in=group_ids).update(
        member_count=Coalesce(Subquery(counts, output_field=IntegerField()), 0)
    )


def lock_for_devices(*, organization):
    """Device side (PostgreSQL): FOR SHARE on the organization row. Device-side changes do not wait for
    each other, but a group-side change (lock_for_groups) waits for those in flight, and they wait for
    it: a device never gets evaluated against a selector that a concurrent transaction is replacing,
    nor missed by a group created while its labels change."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Organization._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR SHARE", [organization.id])


def lock_for_groups(*, organization):
    """Group side (create, selector edit): FOR NO KEY UPDATE on the organization row, taken before the
    group row is touched (no lock cycle with device-side member_count updates). It does not conflict
    with the FOR KEY SHARE locks of ordinary inserts referencing the organization."""
    if connection.vendor == "postgresql":
        Organization.objects.select_for_update(no_key=True).filter(id=organization.id).values_list("id").first()


def refresh_for_devices(*, organization, device_ids, label_keys=None):
    """Device side: re-evaluate the dynamic groups of the organization for these devices — only
    those whose selector reads one of `label_keys` when only labels changed."""
    lock_for_devices(organization=organization)
    groups = list(DeviceGroup.objects.filter(organization=organization, kind=GroupKind.DYNAMIC).only("id", "kind", "selector"))
    if label_keys is not None:
        groups = [group for group in groups if reads_keys(group.selector, label_keys)]
    return refresh_dynamic(organization=organization, groups=groups, device_ids=device_ids)


def member_ids(*, organization, group_ids):
    """A subquery of the device ids in any of these groups."""
    return (
        DeviceGroupMembership.objects.filter(organization=organization, group_id__in=list(group_ids))
        .order_by()
        .values("device_id")
    )


def groups_of_devices(*, device_ids):
    return set(
        DeviceGroupMembership.objects.filter(device_id__in=list(device_ids)).values_list("group_id", flat=True).distinct()
    )

