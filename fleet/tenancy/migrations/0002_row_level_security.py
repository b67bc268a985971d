from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity

# Authentication must find a credential before it knows the organization. This function returns
# only the org_id of the row holding that exact hash; the bypass is confined to its body.
# (A function-level SET clause would need superuser for a custom setting, hence set_config.)
CREDENTIAL_FUNCTION = """
CREATE OR REPLACE FUNCTION fleet_credential_org(p_table text, p_hash text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    result uuid;
    previous text := coalesce(current_setting('app.rls_bypass', true), '');
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = p_table AND column_name = 'secret_hash'
    ) THEN
        RAISE EXCEPTION 'not a credential table: %', p_table;
    END IF;
    PERFORM set_config('app.rls_bypass', 'on', true);
    EXECUTE format('SELECT org_id FROM %I WHERE secret_hash = $1', p_table) INTO result USING p_hash;
    PERFORM set_config('app.rls_bypass', previous, true);
    RETURN result;
END;
$$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREDENTIAL_FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS fleet_credential_org(text, text)")


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("tenancy_membership"),
        EnableRowLevelSecurity("tenancy_apikey"),
        migrations.RunPython(forwards, backwards),
    ]
