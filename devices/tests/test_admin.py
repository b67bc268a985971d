import pytest
from django.urls import reverse

from devices.models import Device, DeviceStatus, DeviceToken
from devices.tests.conftest import jpeg_bytes
from devices.tests.factories import DeviceUserFactory, registered_device
from fleet.tenancy import rls
from fleet.tenancy.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_changelist_filters_and_detail(admin_client, org, dclient, device):
    dclient.post(f"/api/v1/devices/{device.device_id}/frames", jpeg_bytes(), content_type="image/jpeg")
    DeviceUserFactory(organization=org, device=device)
    changelist = reverse("admin:devices_device_changelist")
    assert admin_client.get(changelist).status_code == 200
    for query in ("?status__exact=active", "?platform__exact=python", "?connectivity_status__exact=never_seen",
                  "?label=site%3Dberlin", "?q=dev"):
        response = admin_client.get(changelist + query)
        assert response.status_code == 200, query
        assert device.device_id in response.content.decode(), query
    page = admin_client.get(reverse("admin:devices_device_change", args=[device.pk])).content.decode()
    assert "frame.jpg" in page and "device.registered" in page and "berlin" in page
    frame = admin_client.get(reverse("admin:devices_device_frame", args=[device.pk]))
    assert frame.status_code == 200 and frame["Content-Type"] == "image/jpeg"


def test_admin_actions_call_the_services(admin_client, org):
    first, second = registered_device(org), registered_device(org)
    changelist = reverse("admin:devices_device_changelist")
    admin_client.post(changelist, {"action": "archive", "_selected_action": [str(first.pk)]})
    admin_client.post(changelist, {"action": "revoke", "_selected_action": [str(second.pk)]})
    with rls.bypass(reason="test"):
        assert Device.objects.get(pk=first.pk).status == DeviceStatus.ARCHIVED
        assert Device.objects.get(pk=second.pk).status == DeviceStatus.REVOKED
        assert not DeviceToken.objects.filter(device=second, revoked_at__isnull=True).exists()


def test_group_admin_validates_previews_and_lists_members(admin_client, org):
    from devices.models import DeviceGroup

    registered_device(org, device_id="b-1", labels={"site": "berlin"})
    registered_device(org, device_id="p-1", labels={"site": "paris"})
    add = reverse("admin:devices_devicegroup_add")
    assert admin_client.get(add).status_code == 200
    form = {"organization": str(org.pk), "name": "Berlin", "slug": "berlin", "description": "", "kind": "dynamic"}
    bad = admin_client.post(add, {**form, "selector": '{"match_expressions": [{"key": "a", "operator": "Near"}]}'})
    assert bad.status_code == 200 and "operator" in bad.content.decode()
    response = admin_client.post(add, {**form, "selector": '{"match_labels": {"site": "berlin"}}'})
    assert response.status_code == 302, response.content.decode()[:2000]
    with rls.bypass(reason="test"):
        group = DeviceGroup.objects.get(slug="berlin")
        assert group.member_count == 1
    page = admin_client.get(reverse("admin:devices_devicegroup_change", args=[group.pk])).content.decode()
    assert "1 device(s) match now" in page and "b-1" in page and "1 member(s)" in page
    response = admin_client.post(reverse("admin:devices_devicegroup_change", args=[group.pk]), {
        "name": "Paris", "slug": "berlin", "description": "", "selector": '{"match_labels": {"site": "paris"}}'})
    assert response.status_code == 302
    changelist = admin_client.get(reverse("admin:devices_devicegroup_changelist")).content.decode()
    assert "Paris" in changelist
    with rls.bypass(reason="test"):
        assert set(group.memberships.values_list("device__device_id", flat=True)) == {"p-1"}
    response = admin_client.post(reverse("admin:devices_devicegroup_delete", args=[group.pk]), {"post": "yes"})
    assert response.status_code == 302
    with rls.bypass(reason="test"):
        assert not DeviceGroup.objects.filter(pk=group.pk).exists()
