import django.db.models.deletion
import uuid
from django.db import migrations, models

from fleet.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):

    dependencies = [
        ('apps_catalog', '0003_public_catalog'),
        ('deployments', '0002_row_level_security'),
        ('devices', '0001_initial'),
        ('tenancy', '0002_row_level_security'),
    ]

    operations = [
        migrations.CreateModel(
            name='TrainingRound',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('number', models.PositiveIntegerField()),
                ('status', models.CharField(choices=[('open', 'Open'), ('closed', 'Closed')], default='open', max_length=8)),
                ('target_selector', models.JSONField(blank=True, default=dict)),
                ('min_participants', models.PositiveIntegerField(default=1)),
                ('deadline', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.CharField(blank=True, default='', max_length=200)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('closed_at', models.DateTimeField(blank=True, null=True)),
                ('app', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apps_catalog.app')),
                ('capability', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='apps_catalog.modelcapability')),
                ('organization', models.ForeignKey(db_column='org_id', on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization')),
            ],
            options={
                'ordering': ['-created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='TrainingParticipation',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('num_samples', models.PositiveIntegerField(default=0)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('update', models.JSONField(blank=True, default=dict, help_text='Update metadata: uri, size_bytes, sha256, …')),
                ('submitted_at', models.DateTimeField()),
                ('device', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='devices.device')),
                ('organization', models.ForeignKey(db_column='org_id', on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization')),
                ('round', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='participations', to='deployments.traininground')),
            ],
            options={
                'ordering': ['submitted_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='CapabilityProfile',
            fields=[
                ('device', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='capability_profile', serialize=False, to='devices.device')),
                ('device_class', models.CharField(max_length=32)),
                ('scores', models.JSONField(blank=True, default=dict)),
                ('classifier_version', models.CharField(max_length=32)),
                ('computed_at', models.DateTimeField()),
                ('organization', models.ForeignKey(db_column='org_id', on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization')),
            ],
            options={
                'indexes': [models.Index(fields=['organization', 'device_class'], name='profile_org_class')],
            },
        ),
        migrations.CreateModel(
            name='RoutingEvent',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('device_identifier', models.CharField(blank=True, default='', max_length=255)),
                ('route', models.CharField(choices=[('local', 'Local'), ('cloud', 'Cloud')], max_length=8)),
                ('latency_ms', models.FloatField(blank=True, null=True)),
                ('success', models.BooleanField(default=True)),
                ('reason', models.CharField(blank=True, default='', max_length=200)),
                ('ts', models.DateTimeField()),
                ('received_at', models.DateTimeField()),
                ('app', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apps_catalog.app')),
                ('capability', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='apps_catalog.modelcapability')),
                ('device', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='devices.device')),
                ('organization', models.ForeignKey(db_column='org_id', on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.organization')),
                ('variant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='apps_catalog.modelvariant')),
            ],
            options={
                'ordering': ['-ts', '-id'],
                'indexes': [models.Index(fields=['organization', '-ts'], name='routing_org_ts'), models.Index(fields=['organization', 'app', '-ts'], name='routing_org_app_ts'), models.Index(fields=['organization', 'variant', 'ts'], name='routing_org_variant_ts')],
            },
        ),
        migrations.AddIndex(
            model_name='traininground',
            index=models.Index(fields=['organization', 'status'], name='training_round_org_status'),
        ),
        migrations.AddConstraint(
            model_name='traininground',
            constraint=models.UniqueConstraint(fields=('app', 'capability', 'number'), name='training_round_unique_number'),
        ),
        migrations.AddConstraint(
            model_name='trainingparticipation',
            constraint=models.UniqueConstraint(fields=('round', 'device'), name='training_participation_unique'),
        ),
        EnableRowLevelSecurity("deployments_capabilityprofile"),
        EnableRowLevelSecurity("deployments_routingevent"),
        EnableRowLevelSecurity("deployments_traininground"),
        EnableRowLevelSecurity("deployments_trainingparticipation"),
    ]
