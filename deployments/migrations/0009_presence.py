# Steady polls answered from Redis (devices.presence): a device whose revision or drift changes
# loses its desired-state lease at the next flush.

from django.db import migrations

from devices import presence

TRIGGER = dict(name="fleet_presence_state", table="deployments_devicestate")


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in presence.trigger_sql(**TRIGGER, kind="state", columns=["org_id", "revision", "drift", "drifted"]):
            schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in presence.drop_trigger_sql(**TRIGGER):
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("deployments", "0008_no_org_index"), ("devices", "0010_presence")]

    operations = [migrations.RunPython(install, uninstall)]
