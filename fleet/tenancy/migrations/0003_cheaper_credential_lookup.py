from django.db import migrations

# Same contract as 0002, without the information_schema query (milliseconds per call): the table
# is checked through the catalog (cached by PostgreSQL), and the lookup stays one indexed read.
CREDENTIAL_FUNCTION = """
CREATE OR REPLACE FUNCTION fleet_credential_org(p_table text, p_hash text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    result uuid;
    previous text := coalesce(current_setting('app.rls_bypass', true), '');
    relation regclass := to_regclass(quote_ident(p_table));
BEGIN
    IF relation IS NULL OR NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = relation AND attname = 'secret_hash' AND NOT attisdropped
    ) THEN
        RAISE EXCEPTION 'not a credential table: %', p_table;
    END IF;
    PERFORM set_config('app.rls_bypass', 'on', true);
    EXECUTE format('SELECT org_id FROM %s WHERE secret_hash = $1', relation) INTO result USING p_hash;
    PERFORM set_config('app.rls_bypass', previous, true);
    RETURN result;
END;
$$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREDENTIAL_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0002_row_level_security")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
