"""Row-level security on the devices tables (PostgreSQL only)."""

import pytest
from django.db import connection, transaction

from devices import services
from devices.models import Device, DeviceToken, DeviceUser, EndUser
from devices.tests.factories import DeviceUserFactory, registered_device
from fleet.tenancy import rls

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_tables_have_forced_row_level_security():
    with connection.cursor() as cursor:
        for model in (Device, DeviceToken, EndUser, DeviceUser):
            cursor.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = %s", [model._meta.db_table]
            )
            assert cursor.fetchone() == (True, True), model


def test_rows_are_invisible_outside_their_organization(org, other_org):
    device = registered_device(org)
    DeviceUserFactory(organization=org, device=device)
    with transaction.atomic():
        rls.activate(org_ids=[other_org.id])
        for model in (Device, DeviceToken, EndUser, DeviceUser):
            assert not model.objects.exists(), model
        rls.deactivate()
        for model in (Device, DeviceToken, EndUser, DeviceUser):
            assert not model.objects.exists(), model  # fail closed
        rls.activate(org_ids=[org.id])
        assert Device.objects.count() == 1 and DeviceToken.objects.count() == 1


def test_device_token_lookup_goes_through_the_credential_function(org):
    device = registered_device(org)
    with transaction.atomic():
        token = services.device_token_authenticate(secret=device.secret)
        assert token is not None and token.device_id == device.id
        assert rls.current_org_ids() == (str(org.id),)
        rls.deactivate()


def test_cannot_write_into_another_organization(org, other_org):
    from django.db.utils import ProgrammingError

    with pytest.raises(ProgrammingError), transaction.atomic():
        rls.activate(org_ids=[other_org.id])
        Device.objects.create(organization=org, device_id="intruder")
