# Drop the single-column org_id index: every query names a deployment, group or device, whose
# composite indexes lead; materializing rollouts and memberships writes one index fewer per row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0008_drop_redundant_indexes'),
        ('tenancy', '0004_policy_once_per_statement'),
    ]

    operations = [
        migrations.AlterField(
            model_name='devicegroupmembership',
            name='organization',
            field=models.ForeignKey(db_column='org_id', db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization'),
        ),
    ]
