"""Property: after any sequence of device-side and group-side operations, the materialized membership
table equals a from-scratch evaluation of every group (selector via the Python evaluator, static
members as tracked here), and member_count equals the number of rows."""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import services
from devices.label_selector import matches
from devices.membership import NOT_MEMBERS
from devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceStatus,
    GroupKind,
)
from fleet.activity.services import SYSTEM

pytestmark = pytest.mark.django_db

KEYS = ["a", "b", "c"]
VALUES = ["x", "y"]
PLATFORMS = ["ios", "android", "linux"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
patch_st = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from(VALUES)), min_size=1, max_size=3)
expression_st = st.one_of(
    st.builds(lambda k, op, vs: {"key": k, "operator": op, "values": vs},
              st.sampled_from(KEYS), st.sampled_from(["In", "NotIn"]),
              st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True)),
    st.builds(lambda k, op: {"key": k, "operator": op}, st.sampled_from(KEYS), st.sampled_from(["Exists", "DoesNotExist"])),
)
selector_st = st.fixed_dictionaries({}, optional={
    "match_labels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
    "match_expressions": st.lists(expression_st, max_size=2),
    "platforms": st.lists(st.sampled_from(PLATFORMS), max_size=2, unique=True),
})
index_st = st.integers(min_value=0, max_value=50)
operation_st = st.one_of(
    st.tuples(st.just("register"), labels_st, st.sampled_from(PLATFORMS)),
    st.tuples(st.just("reregister"), index_st, st.sampled_from(PLATFORMS)),
    st.tuples(st.just("patch"), index_st, patch_st),
    st.tuples(st.just("status"), index_st, st.sampled_from(["active", "inactive", "archived"])),
    st.tuples(st.just("revoke"), index_st),
    st.tuples(st.just("delete"), index_st),
    st.tuples(st.just("pending"), labels_st),
    st.tuples(st.just("group"), selector_st),
    st.tuples(st.just("edit"), index_st, selector_st),
    st.tuples(st.just("drop_group"), index_st),
    st.tuples(st.just("static_add"), index_st, st.lists(index_st, min_size=1, max_size=3)),
    st.tuples(st.just("static_remove"), index_st, st.lists(index_st, min_size=1, max_size=3)),
    st.tuples(st.just("bulk_selector"), selector_st, labels_st, st.lists(st.sampled_from(KEYS), max_size=2, unique=True)),
    st.tuples(st.just("bulk_group"), index_st, labels_st, st.lists(st.sampled_from(KEYS), max_size=2, unique=True)),
)


class Rollback(Exception):
    pass


def pick(items, index):
    return items[index % len(items)] if items else None


def check(org, static_members):
    rows = set(DeviceGroupMembership.objects.filter(organization=org).values_list("group_id", "device_id"))
    devices = list(Device.objects.filter(organization=org))
    wanted = set()
    for group in DeviceGroup.objects.filter(organization=org):
        if group.kind == GroupKind.DYNAMIC:
            wanted |= {
                (group.id, d.id) for d in devices
                if d.status not in NOT_MEMBERS and matches(group.selector, labels=d.labels, platform=d.platform)
            }
        else:
            wanted |= {(group.id, pk) for pk in static_members.get(group.id, set())}
        assert group.member_count == sum(1 for g, _ in rows if g == group.id)
    assert rows == wanted


def apply(org, operation, static_members, counter):
    kind, *args = operation
    devices = list(Device.objects.filter(organization=org).order_by("device_id"))
    groups = list(DeviceGroup.objects.filter(organization=org).order_by("slug"))
    dynamic = [g for g in groups if g.kind == GroupKind.DYNAMIC]
    static = [g for g in groups if g.kind == GroupKind.STATIC]
    live = [d for d in devices if d.status != DeviceStatus.REVOKED]
    n = next(counter)
    if kind == "register":
        services.device_register(organization=org, actor=SYSTEM, device_id=f"d{n:03d}", labels=args[0], platform=args[1])
    elif kind == "reregister" and live:
        services.device_register(organization=org, actor=SYSTEM, device_id=pick(live, args[0]).device_id, platform=args[1])
    elif kind == "pending":
        services.device_create_pending(organization=org, actor=SYSTEM, device_id=f"d{n:03d}", labels=args[0])
    elif kind == "patch" and devices:
        device = pick(devices, args[0])
        device.organization = org
        services.device_update(device=device, actor=SYSTEM, labels=args[1])
    elif kind == "status" and live:
        device = pick(live, args[0])
        device.organization = org
        services.device_update(device=device, actor=SYSTEM, status=args[1])
    elif kind == "revoke" and devices:
        device = pick(devices, args[0])
        device.organization = org
        services.device_revoke(device=device, actor=SYSTEM)
    elif kind == "delete":
        deletable = [d for d in devices if d.status in NOT_MEMBERS]
        if deletable:
            device = pick(deletable, args[0])
            device.organization = org
            deleted_id = device.id  # delete() clears the instance's pk
            services.device_delete(device=device, actor=SYSTEM)
            for members in static_members.values():
                members.discard(deleted_id)
    elif kind == "group":
        static_kind = n % 3 == 0
        group = services.device_group_create(
            organization=org, actor=SYSTEM, name=f"g{n}", slug=f"g{n:03d}",
            kind=GroupKind.STATIC if static_kind else GroupKind.DYNAMIC, selector=None if static_kind else args[0],
        )
        if static_kind:
            static_members[group.id] = set()
    elif kind == "edit" and dynamic:
        services.device_group_update(group=pick(dynamic, args[0]), actor=SYSTEM, selector=args[1])
    elif kind == "drop_group" and groups:
        group = pick(groups, args[0])
        static_members.pop(group.id, None)
        services.device_group_delete(group=group, actor=SYSTEM)
    elif kind in ("static_add", "static_remove") and static and devices:
        group = pick(static, args[0])
        chosen = {pick(devices, i).id for i in args[1]}
        if kind == "static_add":
            services.device_group_members_add(group=group, actor=SYSTEM, device_refs=[str(i) for i in chosen])
            static_members[group.id] |= chosen
        else:
            services.device_group_members_remove(group=group, actor=SYSTEM, device_refs=[str(i) for i in chosen])
            static_members[group.id] -= chosen
    elif kind == "bulk_selector":
        _, selector, set_labels, remove = operation
        remove = [k for k in remove if k not in set_labels]
        if set_labels or remove:
            services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": selector},
                                         set_labels=set_labels, remove=remove)
    elif kind == "bulk_group" and groups:
        _, index, set_labels, remove = operation
        remove = [k for k in remove if k not in set_labels]
        if set_labels or remove:
            services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"group": pick(groups, index).slug},
                                         set_labels=set_labels, remove=remove)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(operations=st.lists(operation_st, min_size=1, max_size=25))
def test_membership_equals_from_scratch_evaluation(org, org_context, operations):
    import itertools

    org_context(org)
    counter = itertools.count()
    try:
        with transaction.atomic():
            static_members = {}
            for operation in [("register", {"a": "x"}, "ios"), ("register", {}, "linux"), *operations]:
                apply(org, operation, static_members, counter)
                check(org, static_members)
            raise Rollback
    except Rollback:
        pass
