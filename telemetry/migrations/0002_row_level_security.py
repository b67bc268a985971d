from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity


def brin_on_ts(apps, schema_editor):
    # PostgreSQL only: a BRIN index on ts is tiny (a few pages per GB) and serves the
    # organization-wide time ranges of exports on an append-mostly table; the unique
    # (device, metric, ts) b-tree serves per-device queries.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS reading_ts_brin ON telemetry_reading USING brin (ts)")


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS reading_ts_brin")


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("telemetry_reading"),
        EnableRowLevelSecurity("telemetry_quarantinedreading"),
        EnableRowLevelSecurity("telemetry_annotationclass"),
        EnableRowLevelSecurity("telemetry_annotation"),
        migrations.RunPython(brin_on_ts, drop_brin),
    ]
