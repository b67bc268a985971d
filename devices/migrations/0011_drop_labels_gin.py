# The GIN index on labels served no query of the application. Under row-level security a condition
# written by the query can become an index condition only if its operator is leakproof, and jsonb's
# containment (@>) is not: PostgreSQL evaluates the policy first, so the runtime role's label filters
# scan the organization's devices whatever the index. It still cost a write per label change, and it
# kept those UPDATEs from being HOT (docs/performance.md). fleet/tenancy/tests/test_indexes.py
# checks that every index of an organization-scoped table can serve the runtime role.

from django.db import migrations


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS device_labels_gin")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS device_labels_gin ON devices_device USING gin (labels jsonb_path_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [("devices", "0010_presence")]

    operations = [migrations.RunPython(drop, create)]
