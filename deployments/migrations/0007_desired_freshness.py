# The steady desired-state path: a generation per organization, increased at commit by triggers on
# every input table of a device's desired state (deployments.freshness).

import django.db.models.deletion
from django.db import migrations, models

from deployments import freshness
from fleet.tenancy.rls import EnableRowLevelSecurity


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in freshness.install_sql():
            schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in freshness.uninstall_sql():
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0006_drop_redundant_indexes'),
        ('tenancy', '0004_policy_once_per_statement'),
        ('apps_catalog', '0004_alter_apptarget_platform'),
    ]

    operations = [
        migrations.CreateModel(
            name='DesiredGeneration',
            fields=[
                ('organization', models.OneToOneField(db_column='org_id', on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='tenancy.organization')),
                ('value', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name='devicestate',
            name='device_fingerprint',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddField(
            model_name='devicestate',
            name='generation',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        EnableRowLevelSecurity("deployments_desiredgeneration"),
        migrations.RunPython(install, uninstall),
    ]
