# PostgreSQL only: the unique (device, metric, ts) index also carries org_id and value (INCLUDE), so
# an export chunk, which walks that index in order, is an index-only scan instead of one heap page
# per reading (readings arrive in time order, so (device, metric, ts) order is random on the heap).
# The index stays the ingest's ON CONFLICT arbiter: INCLUDE columns take no part in uniqueness.
# On a large table, build the index beforehand without blocking ingest (docs/telemetry.md): the
# migration then finds it in place and does nothing.

from django.db import migrations

NAME = "reading_unique_device_metric_ts"


def constraint(include):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT indnatts > indnkeyatts FROM pg_index WHERE indexrelid = %s::regclass", [NAME])
            if cursor.fetchone()[0] != bool(include):
                schema_editor.execute(
                    f"ALTER TABLE telemetry_reading DROP CONSTRAINT {NAME}, "
                    f"ADD CONSTRAINT {NAME} UNIQUE (device_id, metric, ts){include}"
                )

    return apply


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0003_drop_redundant_indexes")]

    operations = [
        migrations.RunPython(constraint(" INCLUDE (org_id, value)"), constraint("")),
    ]
