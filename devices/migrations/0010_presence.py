# Steady polls answered from Redis (devices.presence): the triggers that record which devices and
# tokens changed, so that the flush drops their leases.

from django.db import migrations

from devices import presence


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in presence.install_sql():
            schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in presence.uninstall_sql():
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("devices", "0009_no_org_index")]

    operations = [migrations.RunPython(install, uninstall)]
