from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("devices", "0004_device_groups")]

    operations = [
        EnableRowLevelSecurity("devices_devicegroup"),
        EnableRowLevelSecurity("devices_devicegroupmembership"),
    ]
