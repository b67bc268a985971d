# Drop single-column indexes that composite indexes leading with the same column make redundant:
# one index fewer to write per row on the tables written most (see docs/performance.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0008_drop_redundant_indexes'),
        ('telemetry', '0002_row_level_security'),
    ]

    operations = [
        migrations.AlterField(
            model_name='reading',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='devices.device'),
        ),
    ]
