from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from devices import services, tasks
from devices.models import Connectivity, Device
from devices.tests.factories import registered_device
from fleet.activity.models import ActivityEvent
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def beat(device, at):
    with rls.organization_context(org_id=device.organization_id):
        with rls.bypass(reason="test"):
            target = Device.objects.select_related("organization").get(pk=device.pk)
        services.device_heartbeat(device=target, actor=services.activity.SYSTEM, now=at)


def state(device):
    with rls.bypass(reason="test"):
        return Device.objects.get(pk=device.pk).connectivity_status


def verbs(device):
    with rls.bypass(reason="test"):
        return list(ActivityEvent.objects.filter(device_ref=device.id).order_by("created_at").values_list("verb", flat=True))


def test_connectivity_states():
    now = timezone.now()
    check = services.connectivity_at
    assert check(last_heartbeat=None, interval_s=60, now=now) == "never_seen"
    assert check(last_heartbeat=now - timedelta(seconds=120), interval_s=60, now=now) == "online"
    assert check(last_heartbeat=now - timedelta(seconds=121), interval_s=60, now=now) == "stale"
    assert check(last_heartbeat=now - timedelta(seconds=600), interval_s=60, now=now) == "stale"
    assert check(last_heartbeat=now - timedelta(seconds=601), interval_s=60, now=now) == "offline"


def test_sweep_moves_devices_across_organizations(org, other_org):
    now = timezone.now()
    fresh_device = registered_device(org)
    stale_device = registered_device(org)
    offline_device = registered_device(other_org)
    never = registered_device(org)
    beat(fresh_device, now - timedelta(seconds=30))
    beat(stale_device, now - timedelta(seconds=200))
    beat(offline_device, now - timedelta(seconds=700))

    counts = tasks.connectivity_sweep()  # the task function itself, no worker
    assert counts == {"stale": 1, "offline": 1}
    assert state(fresh_device) == Connectivity.ONLINE
    assert state(stale_device) == Connectivity.STALE
    assert state(offline_device) == Connectivity.OFFLINE
    assert state(never) == Connectivity.NEVER_SEEN
    assert verbs(stale_device)[-1] == "device.went_stale"
    assert verbs(offline_device)[-1] == "device.went_offline"
    with rls.bypass(reason="test"):
        event = ActivityEvent.objects.get(device_ref=offline_device.id, verb="device.went_offline")
    assert event.organization_id == other_org.id and event.actor_type == "system"

    # nothing more to do: no duplicate events
    assert tasks.connectivity_sweep() == {"stale": 0, "offline": 0}
    # later the stale device goes offline; a heartbeat brings it back online (one event each)
    assert services.devices_connectivity_sweep(now=now + timedelta(seconds=500)) == {"stale": 1, "offline": 1}
    assert state(stale_device) == Connectivity.OFFLINE
    beat(stale_device, now + timedelta(seconds=510))
    assert state(stale_device) == Connectivity.ONLINE
    assert verbs(stale_device)[-3:] == ["device.went_stale", "device.went_offline", "device.came_online"]


def test_sweep_ignores_revoked_devices(org, client_a):
    device = registered_device(org)
    beat(device, timezone.now() - timedelta(seconds=1000))
    client_a.post(f"/api/v1/devices/{device.device_id}/revoke")
    assert tasks.connectivity_sweep() == {"stale": 0, "offline": 0}
    assert state(device) == Connectivity.OFFLINE


def test_sweep_uses_custom_interval(org):
    device = registered_device(org)
    with rls.bypass(reason="test"):
        Device.objects.filter(pk=device.pk).update(heartbeat_interval_s=10)
    beat(device, timezone.now() - timedelta(seconds=25))
    assert tasks.connectivity_sweep() == {"stale": 1, "offline": 0}


def test_sweep_is_scheduled_every_30_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["devices-connectivity-sweep"]
    assert entry["task"] == "devices.tasks.connectivity_sweep" == tasks.connectivity_sweep.name
    assert entry["schedule"] == 30.0
