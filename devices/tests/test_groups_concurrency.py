"""Membership stays exact when a group-side change races a device-side change (PostgreSQL, two connections)."""

import threading
import time

import pytest
from django.db import connections, transaction

from devices import services
from devices.models import Device, DeviceGroup, DeviceGroupMembership
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls


def _in_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as exc:  # noqa: BLE001 (surfaced by the caller)
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _members(group_slug):
    with rls.bypass(reason="test"):
        return set(
            DeviceGroupMembership.objects.filter(group__slug=group_slug).values_list("device__device_id", flat=True)
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_side", ["create", "edit"])
def test_a_group_change_waits_for_an_uncommitted_label_change(org, group_side):
    with rls.organization_context(org_id=org.id):
        services.device_register(organization=org, actor=SYSTEM, device_id="cam", labels={"site": "paris"})
        if group_side == "edit":
            services.device_group_create(organization=org, actor=SYSTEM, name="B", slug="berlin",
                                         selector={"match_labels": {"site": "rome"}})
    labelled = threading.Event()
    release = threading.Event()

    def device_side():
        with rls.organization_context(org_id=org.id), transaction.atomic():
            device = Device.objects.select_related("organization").get(device_id="cam")
            services.device_update(device=device, actor=SYSTEM, labels={"site": "berlin"})
            labelled.set()
            release.wait(timeout=30)  # the group-side change starts meanwhile

    def group_side_change():
        labelled.wait(timeout=30)
        with rls.organization_context(org_id=org.id):
            selector = {"match_labels": {"site": "berlin"}}
            if group_side == "create":
                services.device_group_create(organization=org, actor=SYSTEM, name="B", slug="berlin", selector=selector)
            else:
                group = DeviceGroup.objects.select_related("organization").get(slug="berlin")
                services.device_group_update(group=group, actor=SYSTEM, selector=selector)

    first, first_result = _in_thread(device_side)
    second, second_result = _in_thread(group_side_change)
    labelled.wait(timeout=30)
    time.sleep(0.5)  # the group-side transaction is now blocked on the organization lock
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert "error" not in first_result and "error" not in second_result, (first_result, second_result)
    assert _members("berlin") == {"cam"}
    with rls.bypass(reason="test"):
        assert DeviceGroup.objects.get(slug="berlin").member_count == 1
