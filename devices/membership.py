"""Materialized group membership: set-based SQL that keeps `DeviceGroupMembership` exact.

Dynamic groups: the wanted (group, device) pairs are the devices in scope that are neither revoked
nor archived, each paired with the groups whose selector (compiled by `label_selector.selector_q`)
it matches; the devices are read once whatever the number of groups. Two statements apply it,
whatever the number of devices: a DELETE of memberships whose device no longer matches (each looks
its device up by primary key) and an INSERT … SELECT of the missing pairs (NOT EXISTS answered by
the unique (group, device) index; ON CONFLICT DO NOTHING for concurrent writers). Both plans stay
linear whatever the statistics say: a `NOT IN (subquery)` too large for work_mem, or an anti-join
against the derived wanted pairs misestimated as one row, re-scans the subquery for every row.
Both return the group id of every row they touched, and member_count moves by those per-group
deltas in one UPDATE. No Python loop over devices anywhere.

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
    """SQL for the ids of memberships of `groups` whose device is no longer eligible or no longer
    matches its group's selector. Each membership looks its device up by primary key, so the plan
    stays linear whatever the statistics estimate (an anti-join against the wanted pairs became a
    nested loop over both sets when a fresh table was estimated at one row)."""
    still_matches = functools.reduce(operator.or_, [
        Q(Exact(OuterRef("group_id"), Value(group.id, output_field=UUIDField()))) & selector_q(group.selector or {})
        for group in groups
    ])
    device = eligible_devices(organization=organization).filter(Q(id=OuterRef("device_id")) & still_matches)
    rows = DeviceGroupMembership.objects.filter(organization=organization, group_id__in=[group.id for group in groups])
    if device_ids is not None:
        rows = rows.filter(device_id__in=device_ids)
    return _sql(rows.filter(~Exists(device)).order_by().values("id"))


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
    table = connection.ops.quote_name(DeviceGroupMembership._meta.db_table)
    unwanted_sql, unwanted_params = _unwanted(organization=organization, groups=groups, device_ids=device_ids)
    wanted_sql, wanted_params = _wanted(organization=organization, groups=groups, device_ids=device_ids)
    with connection.cursor() as cursor:
        deleted = _per_group(cursor, f"DELETE FROM {table} WHERE id IN ({unwanted_sql}) RETURNING group_id", unwanted_params)
        # The wanted pairs are the outer side; the unique (group, device) index answers NOT EXISTS.
        inserted = _per_group(
            cursor,
            f"INSERT INTO {table} (org_id, group_id, device_id, reason, created_at) "
            f"SELECT %s, w.gid, w.did, %s, %s FROM ({wanted_sql}) w "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} m WHERE m.group_id = w.gid AND m.device_id = w.did) "
            "ON CONFLICT (group_id, device_id) DO NOTHING RETURNING group_id",
            [_prep(DeviceGroupMembership, "organization", organization.id), MembershipReason.SELECTOR,
             _prep(DeviceGroupMembership, "created_at", timezone.now()), *wanted_params],
        )
    deltas = Counter(inserted)
    deltas.subtract(deleted)
    count_add(deltas=deltas)
    return set(inserted) | set(deleted)


def _per_group(cursor, statement, params):
    """Run a DELETE/INSERT … RETURNING group_id; return {group id: rows}. PostgreSQL counts in SQL
    (a data-modifying CTE), so a 100k-row change sends back one row per group."""
    if connection.vendor == "postgresql":
        cursor.execute(f"WITH changed AS ({statement}) SELECT group_id, count(*) FROM changed GROUP BY group_id", params)
        return Counter({_from_db(group_id): n for group_id, n in cursor.fetchall()})
    cursor.execute(statement, params)
    return Counter(_from_db(row[0]) for row in cursor.fetchall())


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
        .annotate(n=Count("id"))
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

