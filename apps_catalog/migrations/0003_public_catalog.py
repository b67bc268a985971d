"""Seed the public model catalog from fixtures/public_catalog.json (same upsert as `load_catalog`)."""

from django.db import migrations


def forwards(apps, schema_editor):
    from apps_catalog.catalog_fixture import load_into, read_fixture

    connection = schema_editor.connection
    if connection.vendor == "postgresql":  # public rows (org_id NULL) are written through the bypass
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.rls_bypass', 'on', true)")
    try:
        load_into(
            read_fixture(),
            capability_model=apps.get_model("apps_catalog", "ModelCapability"),
            model_model=apps.get_model("apps_catalog", "CatalogModel"),
            variant_model=apps.get_model("apps_catalog", "ModelVariant"),
        )
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('app.rls_bypass', '', true)")


class Migration(migrations.Migration):
    dependencies = [("apps_catalog", "0002_row_level_security")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
