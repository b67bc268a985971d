from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("provisioning_registrationtoken"),
        EnableRowLevelSecurity("provisioning_organizationca"),
        EnableRowLevelSecurity("provisioning_devicecertificate"),
        EnableRowLevelSecurity("provisioning_deviceenrollment"),
    ]
