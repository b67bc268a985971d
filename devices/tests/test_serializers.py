"""DeviceSerializer builds its representation directly (the device list's cost); it must stay equal to
what DRF's own field machinery makes of the declared fields, which also describe the schema."""

import datetime
import uuid

import pytest
from rest_framework import serializers

from apps_catalog.tests.factories import AppFactory
from devices.api.serializers import DeviceSerializer
from devices.tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

BERLIN = datetime.timezone(datetime.timedelta(hours=1))


def drf(serializer, device):
    return serializers.Serializer.to_representation(serializer, device)


def test_a_bare_device_is_represented_as_drf_would():
    device = DeviceFactory()
    serializer = DeviceSerializer(context={})
    assert serializer.to_representation(device) == drf(serializer, device)
    assert list(serializer.to_representation(device)) == list(serializer.fields)


def test_every_field_filled_in_is_represented_as_drf_would(org):
    device = DeviceFactory(
        organization=org,
        app=AppFactory(organization=org, slug="vision"),
        labels={"site": "berlin", "tier": "gold"},
        capabilities={"vision": {"fps": 30}, "npu": True},
        serial_number="SN-1",
        unique_key="uk-1",
        os_name="linux",
        os_version="6.1",
        agent_version="2.3.0",
        installed_at=datetime.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=BERLIN),
        hardware={"manufacturer": "Acme", "cpu_cores": 8, "ram": None},  # model and cpu_model missing
        extensions={"chrome": {"version": "1.2", "installed": True}, "edge": None},
        last_heartbeat=datetime.datetime(2026, 3, 2, 8, 30, tzinfo=datetime.UTC),
        last_metrics={"battery_level": 0.5, "temperature_c": 41},
        heartbeat_interval_s=120,
        frame_path="frames/x.jpg",
        frame_captured_at=datetime.datetime(2026, 3, 2, 8, 29, 59, tzinfo=BERLIN),
        frame_size_bytes=1024,
        frame_width=640,
        frame_height=480,
    )
    assignment = [{"deployment_id": str(uuid.uuid4()), "capability": "vision", "variant_id": str(uuid.uuid4()),
                   "version": "1.0", "source": "selector", "status": "installed"}]
    serializer = DeviceSerializer(context={"enrichments": {device.id: {"assignment": assignment}}})
    fast = serializer.to_representation(device)
    assert fast == drf(serializer, device)
    assert fast["installed_at"] == "2026-03-01T11:00:00.123456Z"
    assert fast["hardware"] == {"manufacturer": "Acme", "model": None, "cpu_model": None, "cpu_cores": 8, "ram": None}
    assert fast["app"] == "vision" and fast["assignment"] == assignment
