import pytest
from rest_framework.test import APIClient

from devices import services as device_services
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls


@pytest.fixture
def register(db):
    """Register a device through the real service; returns (device, APIClient with its token)."""

    def register(organization, device_id, **fields):
        with rls.bypass(reason="test setup"):
            device, secret, _ = device_services.device_register(
                organization=organization, actor=SYSTEM, device_id=device_id, **fields
            )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return device, client

    return register
