from django.db import migrations

from fleet.tenancy.rls import POLICY_PREDICATE, EnableRowLevelSecurity

# Catalog models and variants: a null org_id is the public catalog, readable by every organization;
# rows are written only for the current organization (or through the audited bypass, which is how
# the public catalog itself is loaded). Fail-closed like every other policy.
PUBLIC_CATALOG_TABLES = ("apps_catalog_catalogmodel", "apps_catalog_modelvariant")


def public_catalog_policies(table):
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY catalog_read ON "{table}" FOR SELECT USING (org_id IS NULL OR ({POLICY_PREDICATE}))',
        f'CREATE POLICY catalog_insert ON "{table}" FOR INSERT WITH CHECK ({POLICY_PREDICATE})',
        f'CREATE POLICY catalog_update ON "{table}" FOR UPDATE USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})',
        f'CREATE POLICY catalog_delete ON "{table}" FOR DELETE USING ({POLICY_PREDICATE})',
    ]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in PUBLIC_CATALOG_TABLES:
        for statement in public_catalog_policies(table):
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in PUBLIC_CATALOG_TABLES:
        for policy in ("catalog_read", "catalog_insert", "catalog_update", "catalog_delete"):
            schema_editor.execute(f'DROP POLICY IF EXISTS {policy} ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')


class Migration(migrations.Migration):
    dependencies = [("apps_catalog", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("apps_catalog_app"),
        EnableRowLevelSecurity("apps_catalog_apptarget"),
        EnableRowLevelSecurity("apps_catalog_appkey"),
        EnableRowLevelSecurity("apps_catalog_capabilityslot"),
        EnableRowLevelSecurity("apps_catalog_inferenceconfig"),
        EnableRowLevelSecurity("apps_catalog_inferencerequestlog"),
        migrations.RunPython(forwards, backwards),
    ]
