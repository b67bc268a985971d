"""Deployments wired into devices and apps: links, assignments in device responses, exactness."""

import pytest

from apps_catalog.tests.factories import AppFactory, AppKeyFactory, AppTargetFactory
from deployments import services
from deployments.models import DeviceAssignment
from deployments.tests.factories import DeploymentFactory
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def publishable_client(app_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {app_key.secret}")
    return client


def test_publishable_key_registers_devices_for_its_app_only(org):
    app = AppFactory(organization=org)
    target = AppTargetFactory(organization=org, app=app, platform="ios", identifier="com.example.cam")
    other = AppFactory(organization=org)
    key = AppKeyFactory(organization=org, app=app, kind="publishable")
    client = publishable_client(key)
    response = client.post("/api/v1/devices/register", {"device_id": "ipad-1", "platform": "ios"}, format="json")
    assert response.status_code == 201, response.content
    with rls.bypass(reason="test"):
        from devices.models import Device

        device = Device.objects.get(pk=response.json()["id"])
    assert device.app_id == app.id and device.app_target_id == target.id
    refused = client.post("/api/v1/devices/register", {"device_id": "ipad-2", "app": other.slug}, format="json")
    assert refused.status_code == 403
    assert client.get("/api/v1/devices").status_code == 403


def test_register_by_slug_or_bundle_identifier_and_filter_by_app(client_a, org):
    app = AppFactory(organization=org)
    AppTargetFactory(organization=org, app=app, platform="android", identifier="com.example.scan")
    by_slug = client_a.post("/api/v1/devices/register", {"device_id": "a1", "platform": "android", "app": app.slug}, format="json")
    by_identifier = client_a.post(
        "/api/v1/devices/register",
        {"device_id": "a2", "platform": "android", "app_identifier": "com.example.scan"},
        format="json",
    )
    client_a.post("/api/v1/devices/register", {"device_id": "loner"}, format="json")
    assert by_slug.status_code == 201 and by_identifier.status_code == 201
    listed = client_a.get("/api/v1/devices", {"app": app.slug}).json()
    assert sorted(d["device_id"] for d in listed["devices"]) == ["a1", "a2"]
    assert listed["devices"][0]["app"] == app.slug
    unknown = client_a.post("/api/v1/devices/register", {"device_id": "x", "app": "nope"}, format="json")
    assert unknown.status_code == 400 and "app" in unknown.json()["fields"]
    missing = client_a.post(
        "/api/v1/devices/register", {"device_id": "y", "platform": "ios", "app_identifier": "com.nope"}, format="json"
    )
    assert missing.status_code == 400 and "app_identifier" in missing.json()["fields"]


def test_device_list_carries_the_winning_assignment_in_constant_queries(client_a, org, django_assert_max_num_queries):
    devices = [DeviceFactory(organization=org, labels={"site": "berlin"}) for _ in range(12)]
    with rls.organization_context(org_id=org.id):
        dep = DeploymentFactory(organization=org, targeting={"selector": {"match_labels": {"site": "berlin"}}},
                                strategy={"type": "all_at_once"})
        services.deployment_start(deployment=dep, actor=SYSTEM)
    with django_assert_max_num_queries(10):
        small = client_a.get("/api/v1/devices", {"limit": 2}).json()
    with django_assert_max_num_queries(10):
        large = client_a.get("/api/v1/devices", {"limit": 1000}).json()
    assert len(large["devices"]) == 12 and len(small["devices"]) == 2
    [assignment] = large["devices"][0]["assignment"]
    assert assignment["deployment_id"] == str(dep.id) and assignment["capability"] == "vision"
    detail = client_a.get(f"/api/v1/devices/{devices[0].device_id}").json()
    assert detail["assignment"][0]["variant_id"] == str(dep.variant_id)


def test_label_patch_and_revoke_keep_assignments_exact(client_a, org):
    device = DeviceFactory(organization=org, labels={"site": "berlin"})
    with rls.organization_context(org_id=org.id):
        dep = DeploymentFactory(organization=org, targeting={"selector": {"match_labels": {"site": "berlin"}}},
                                strategy={"type": "all_at_once"})
        services.deployment_start(deployment=dep, actor=SYSTEM)

    def assigned():
        with rls.bypass(reason="test"):
            return DeviceAssignment.objects.filter(deployment=dep, device_id=device.id).exists()

    assert assigned()
    client_a.patch(f"/api/v1/devices/{device.id}", {"labels": {"site": "paris"}}, format="json")
    assert not assigned()
    client_a.patch(f"/api/v1/devices/{device.id}", {"labels": {"site": "berlin"}}, format="json")
    assert assigned()
    client_a.post(f"/api/v1/devices/{device.id}/revoke", format="json")
    assert not assigned()
    newcomer = client_a.post("/api/v1/devices/register", {"device_id": "new", "labels": {"site": "berlin"}}, format="json")
    with rls.bypass(reason="test"):
        assert DeviceAssignment.objects.filter(deployment=dep, device_id=newcomer.json()["id"]).exists()


def test_removing_an_app_target_drops_it_from_deployments(client_a, org):
    app = AppFactory(organization=org)
    target = AppTargetFactory(organization=org, app=app, platform="ios", identifier="com.example.gone")
    client_a.post("/api/v1/devices/register", {"device_id": "t1", "platform": "ios", "app": app.slug}, format="json")
    with rls.organization_context(org_id=org.id):
        dep = DeploymentFactory(organization=org, app=app, targeting={"app_target_ids": [str(target.id)]},
                                strategy={"type": "all_at_once"})
        services.deployment_start(deployment=dep, actor=SYSTEM)
        assert DeviceAssignment.objects.filter(deployment=dep).count() == 1
    assert client_a.delete(f"/api/v1/apps/{app.slug}/targets/{target.id}").status_code == 204
    with rls.bypass(reason="test"):
        dep.refresh_from_db()
        assert dep.targeting["app_target_ids"] == []
        assert DeviceAssignment.objects.filter(deployment=dep).count() == 0


def test_sync_stores_reported_inventory(org, register):
    device, client = register(org, "agent-1")
    response = client.post(
        f"/api/v1/devices/{device.id}/sync", {"inventory": {"os_name": "Linux", "agent_version": "2.0.1"}}, format="json"
    )
    assert response.status_code == 200, response.content
    with rls.bypass(reason="test"):
        device.refresh_from_db()
    assert device.os_name == "Linux" and device.agent_version == "2.0.1"
    bad = client.post(f"/api/v1/devices/{device.id}/sync", {"inventory": {"ram": 5}}, format="json")
    assert bad.status_code == 400
