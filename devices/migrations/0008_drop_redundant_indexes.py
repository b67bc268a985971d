# Drop single-column indexes that composite indexes leading with the same column make redundant:
# one index fewer to write per row on the tables written most (see docs/performance.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0007_heartbeat_hot_updates'),
        ('tenancy', '0004_policy_once_per_statement'),
    ]

    operations = [
        migrations.AlterField(
            model_name='device',
            name='organization',
            field=models.ForeignKey(db_column='org_id', db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization'),
        ),
        migrations.AlterField(
            model_name='devicegroupmembership',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='group_memberships', to='devices.device'),
        ),
        migrations.AlterField(
            model_name='devicegroupmembership',
            name='group',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='devices.devicegroup'),
        ),
        migrations.AlterField(
            model_name='devicetoken',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='tokens', to='devices.device'),
        ),
    ]
