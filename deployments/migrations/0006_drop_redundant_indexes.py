# Drop single-column indexes that composite indexes leading with the same column make redundant:
# one index fewer to write per row on the tables written most (see docs/performance.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0005_deployment_bindings'),
        ('devices', '0007_heartbeat_hot_updates'),
    ]

    operations = [
        migrations.AlterField(
            model_name='deviceassignment',
            name='deployment',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='deployments.deployment'),
        ),
        migrations.AlterField(
            model_name='deviceassignment',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='devices.device'),
        ),
        migrations.AlterField(
            model_name='devicecommand',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='commands', to='devices.device'),
        ),
    ]
