from django.db import migrations

from fleet.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("activity", "0001_initial")]

    operations = [EnableRowLevelSecurity("activity_activityevent")]
