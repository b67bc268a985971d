"""Reads: querysets and values for devices and end users. Keyword-only, organization first."""

from django.db.models import Count

from fleet.activity.selectors import activity_list

from . import membership, registry
from .models import (
    Connectivity,
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceStatus,
    DeviceUser,
    EndUser,
    Platform,
)

TOP_VERSIONS = 20


def device_queryset(*, organization):
    return Device.objects.filter(organization=organization).select_related("organization", "app")


def device_activity(*, organization, device, ascending=False):
    return activity_list(organization=organization, device_id=device.id, ascending=ascending)


def device_users(*, organization, device):
    return (
        DeviceUser.objects.filter(organization=organization, device=device)
        .select_related("user")
        .order_by("-last_seen_at", "id")
    )


def end_user_queryset(*, organization):
    return EndUser.objects.filter(organization=organization).order_by("username", "id")


def device_summary(*, organization):
    """Fleet-level counts in two aggregate queries (status x platform x connectivity, os x agent)."""
    by_status = dict.fromkeys(DeviceStatus.values, 0)
    by_platform = dict.fromkeys(Platform.values, 0)
    by_connectivity = dict.fromkeys(Connectivity.values, 0)
    total = 0
    devices = Device.objects.filter(organization=organization).order_by()
    for row in devices.values("status", "platform", "connectivity_status").annotate(n=Count("id")):
        total += row["n"]
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        by_platform[row["platform"]] = by_platform.get(row["platform"], 0) + row["n"]
        by_connectivity[row["connectivity_status"]] = by_connectivity.get(row["connectivity_status"], 0) + row["n"]
    os_names, agent_versions = {}, {}
    for row in devices.values("os_name", "agent_version").annotate(n=Count("id")):
        os_names[row["os_name"]] = os_names.get(row["os_name"], 0) + row["n"]
        agent_versions[row["agent_version"]] = agent_versions.get(row["agent_version"], 0) + row["n"]

    def top(counts, key):
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
        return [{key: value, "count": count} for value, count in ranked[:TOP_VERSIONS]]

    summary = {
        "total": total,
        "by_status": by_status,
        "by_platform": by_platform,
        "by_connectivity": by_connectivity,
        "by_os_name": top(os_names, "os_name"),
        "agent_versions": top(agent_versions, "agent_version"),
        "enrollment_errors": 0,
    }
    summary.update(registry.summary_contributions(organization=organization))
    return summary


# --- device groups ---------------------------------------------------------------------------------
def group_queryset(*, organization):
    return DeviceGroup.objects.filter(organization=organization).select_related("organization").order_by("name", "id")


def group_member_ids(*, organization, group_ids):
    """A subquery of the ids of devices in any of these groups (deployments target groups with it)."""
    return membership.member_ids(organization=organization, group_ids=group_ids)


def group_devices(*, organization, group):
    """The group's member devices, shaped like GET /devices."""
    return device_queryset(organization=organization).filter(
        id__in=membership.member_ids(organization=organization, group_ids=[group.id])
    )


def device_groups(*, organization, device):
    """The groups the device belongs to, each membership with its reason (selector or static)."""
    return (
        DeviceGroupMembership.objects.filter(organization=organization, device=device)
        .select_related("group")
        .order_by("group__name", "group_id")
    )


def group_by_ref(*, organization, ref):
    from .services import device_group_by_ref

    return device_group_by_ref(organization=organization, ref=ref)
