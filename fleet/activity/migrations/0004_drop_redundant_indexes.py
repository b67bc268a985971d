# Drop single-column indexes that composite indexes leading with the same column make redundant:
# one index fewer to write per row on the tables written most (see docs/performance.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('activity', '0003_alter_activityevent_actor_type'),
        ('tenancy', '0004_policy_once_per_statement'),
    ]

    operations = [
        migrations.AlterField(
            model_name='activityevent',
            name='organization',
            field=models.ForeignKey(db_column='org_id', db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization'),
        ),
    ]
