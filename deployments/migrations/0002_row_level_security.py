from django.db import migrations

from deployments.materialize import BUCKET_SQL
from fleet.tenancy.rls import EnableRowLevelSecurity


def bucket_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BUCKET_SQL, params=None)


def drop_bucket_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS fleet_bucket(uuid, uuid)")


class Migration(migrations.Migration):
    dependencies = [("deployments", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("deployments_deployment"),
        EnableRowLevelSecurity("deployments_deviceassignment"),
        EnableRowLevelSecurity("deployments_devicestate"),
        EnableRowLevelSecurity("deployments_devicecommand"),
        migrations.RunPython(bucket_function, drop_bucket_function),
    ]
