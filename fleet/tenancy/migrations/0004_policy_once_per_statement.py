"""Every org_isolation policy reads its settings once per statement (see rls.POLICY_PREDICATE):
policies created before this change are rewritten in place, whichever app created them."""

from django.db import migrations

# Frozen copies: a migration must keep meaning what it meant when written.
ONCE_PER_STATEMENT = (
    "org_id = ANY ((SELECT string_to_array(NULLIF(current_setting('app.org_id', true), ''), ',')::uuid[])::uuid[])"
    " OR (SELECT current_setting('app.rls_bypass', true) = 'on')"
)
PER_ROW = (
    "org_id = ANY (string_to_array(NULLIF(current_setting('app.org_id', true), ''), ',')::uuid[])"
    " OR current_setting('app.rls_bypass', true) = 'on'"
)


def rewrite(predicate):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_policies WHERE schemaname = current_schema() AND policyname = 'org_isolation'"
            )
            tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            schema_editor.execute(
                f"ALTER POLICY org_isolation ON {schema_editor.quote_name(table)} "
                f"USING ({predicate}) WITH CHECK ({predicate})"
            )

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0003_cheaper_credential_lookup"),
    ]

    operations = [migrations.RunPython(rewrite(ONCE_PER_STATEMENT), rewrite(PER_ROW))]
