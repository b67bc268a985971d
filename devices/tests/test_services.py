import pytest

from devices import registry, services, selectors
from devices.models import DeviceStatus, DeviceToken
from fleet.activity.services import SYSTEM
from fleet.errors import Conflict, Invalid
from fleet.tenancy import credentials

pytestmark = pytest.mark.django_db


def test_register_then_reregister(org, org_context):
    org_context(org)
    device, secret, created = services.device_register(organization=org, actor=SYSTEM, device_id="a", name="A")
    assert created and credentials.is_well_formed(secret=secret, prefix="dk_")
    again, secret2, created2 = services.device_register(organization=org, actor=SYSTEM, device_id="a", os_name="Linux")
    assert not created2 and again.id == device.id and secret2 != secret
    assert again.name == "A" and again.os_name == "Linux"
    assert DeviceToken.objects.filter(device=device, revoked_at__isnull=True).count() == 1
    assert DeviceToken.objects.filter(device=device).count() == 2
    assert services.device_token_authenticate(secret=secret) is None
    assert services.device_token_authenticate(secret=secret2).device_id == device.id


def test_register_validates_domain_rules(org, org_context):
    org_context(org)
    with pytest.raises(Invalid) as exc:
        services.device_register(organization=org, actor=SYSTEM, device_id="a", labels={"bad key": "x"})
    assert "labels.bad key" in exc.value.fields
    with pytest.raises(Invalid):
        services.device_register(organization=org, actor=SYSTEM, device_id="register")


def test_status_rules(org, org_context):
    org_context(org)
    device, _, _ = services.device_register(organization=org, actor=SYSTEM, device_id="a")
    services.device_update(device=device, actor=SYSTEM, status=DeviceStatus.ARCHIVED)
    services.device_update(device=device, actor=SYSTEM, status=DeviceStatus.ACTIVE)
    with pytest.raises(Invalid):
        services.device_update(device=device, actor=SYSTEM, status=DeviceStatus.PENDING)
    services.device_revoke(device=device, actor=SYSTEM)
    with pytest.raises(Conflict):
        services.device_update(device=device, actor=SYSTEM, status=DeviceStatus.ACTIVE)
    with pytest.raises(Conflict):
        services.device_register(organization=org, actor=SYSTEM, device_id="a")
    services.device_delete(device=device, actor=SYSTEM)
    assert not selectors.device_queryset(organization=org).exists()


def test_merge_labels():
    assert services.merge_labels({"a": "1", "b": "2"}, {"a": None, "c": "3"}) == {"b": "2", "c": "3"}


def test_summary_provider(org, org_context, client_a):
    org_context(org)

    def errors(*, organization):
        return {"enrollment_errors": 3, "certificates_expiring": 1}

    assert selectors.device_summary(organization=org)["enrollment_errors"] == 0
    registry.register_summary_provider(errors)
    try:
        assert selectors.device_summary(organization=org)["enrollment_errors"] == 3
        body = client_a.get("/api/v1/devices/summary").json()
        assert body["enrollment_errors"] == 3 and body["certificates_expiring"] == 1
    finally:
        registry.unregister(errors)
