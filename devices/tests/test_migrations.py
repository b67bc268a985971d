"""Hand-written migrations, both directions, with rows in the tables they rebuild."""

import pytest
from django.core.management import call_command
from django.db import connection

from devices import services
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls


def membership_rows():
    with rls.bypass(reason="test"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT group_id, device_id, reason, created_at FROM devices_devicegroupmembership ORDER BY 1, 2"
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_membership_key_migration_keeps_every_membership(org):
    with rls.organization_context(org_id=org.id):
        for index in range(6):
            DeviceFactory(organization=org, labels={"site": str(index % 2)})
        services.device_group_create(organization=org, actor=SYSTEM, name="s0", slug="s0",
                                     selector={"match_labels": {"site": "0"}})
        services.device_group_create(organization=org, actor=SYSTEM, name="all", slug="all", selector={})
    before = membership_rows()
    assert len(before) == 9
    try:
        call_command("migrate", "devices", "0011", verbosity=0)
        assert membership_rows() == before
        with rls.bypass(reason="test"), connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT id) FROM devices_devicegroupmembership")
            assert cursor.fetchone()[0] == 9  # the surrogate key is back, one per row
    finally:
        call_command("migrate", "devices", verbosity=0)
    assert membership_rows() == before
    with rls.organization_context(org_id=org.id):
        services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": {}}, set_labels={"site": "0"})
    assert len(membership_rows()) == 12
