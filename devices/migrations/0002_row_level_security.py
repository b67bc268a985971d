from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity

# PostgreSQL only: label selectors (`label[key]=value`) use jsonb containment, served by a GIN index.
LABELS_INDEX = "CREATE INDEX IF NOT EXISTS device_labels_gin ON devices_device USING gin (labels jsonb_path_ops)"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LABELS_INDEX)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS device_labels_gin")


class Migration(migrations.Migration):
    dependencies = [("devices", "0001_initial"), ("tenancy", "0002_row_level_security")]

    operations = [
        EnableRowLevelSecurity("devices_device"),
        EnableRowLevelSecurity("devices_devicetoken"),
        EnableRowLevelSecurity("devices_enduser"),
        EnableRowLevelSecurity("devices_deviceuser"),
        migrations.RunPython(forwards, backwards),
    ]
