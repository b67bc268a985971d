from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("exports", "0001_initial")]

    operations = [EnableRowLevelSecurity("exports_exportjob")]
