import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from fleet.tenancy import rls
from provisioning.models import RegistrationToken
from provisioning.tests.factories import (
    DeviceCertificateFactory,
    DeviceEnrollmentFactory,
    OrganizationCAFactory,
    RegistrationTokenFactory,
)


@pytest.fixture
def superuser_client(db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_changelists_load_and_never_show_secrets(superuser_client, org):
    token = RegistrationTokenFactory(organization=org)
    DeviceCertificateFactory(organization=org)
    DeviceEnrollmentFactory(organization=org)
    ca = OrganizationCAFactory(organization=org)
    for name in ("registrationtoken", "devicecertificate", "deviceenrollment", "organizationca"):
        response = superuser_client.get(f"/admin/provisioning/{name}/")
        assert response.status_code == 200, name
    page = superuser_client.get(f"/admin/provisioning/organizationca/{ca.pk}/change/").content.decode()
    assert "ENCRYPTED PRIVATE KEY" not in page
    page = superuser_client.get(f"/admin/provisioning/registrationtoken/{token.pk}/change/").content.decode()
    assert token.secret_hash not in page and token.secret not in page


def test_revoke_action_calls_the_service(superuser_client, org):
    token = RegistrationTokenFactory(organization=org)
    response = superuser_client.post(
        "/admin/provisioning/registrationtoken/", {"action": "revoke", "_selected_action": [str(token.pk)]}
    )
    assert response.status_code == 302
    with rls.bypass(reason="test"):
        revoked_at = RegistrationToken.objects.get(pk=token.pk).revoked_at
    assert revoked_at is not None and revoked_at <= timezone.now()
