"""Heartbeats rewrite last_heartbeat, stale_at and offline_at on every call: without indexes on them
(and with free space left on each page) PostgreSQL updates the row in place (HOT) instead of adding
an entry to every index of the table."""

from django.db import migrations

FILLFACTOR = 80


def fillfactor(value):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE devices_device SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0006_device_attention"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="device", name="device_org_last_heartbeat"),
        migrations.RemoveIndex(model_name="device", name="device_sweep_stale"),
        migrations.RemoveIndex(model_name="device", name="device_sweep_offline"),
        migrations.RunPython(fillfactor(FILLFACTOR), fillfactor(100)),
    ]
