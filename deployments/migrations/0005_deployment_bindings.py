from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0004_training_round_outcome"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="bindings",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
