"""`migrate` as the owner role (MIGRATION_DATABASE_URL), then grant the runtime role its DML."""

from django.core.management.commands.migrate import Command as MigrateCommand

from fleet.tenancy import dbroles, rls


class Command(MigrateCommand):
    def handle(self, *args, **options):
        runtime_role = rls.runtime_role()
        with dbroles.as_owner(options["database"]) as conn:
            super().handle(*args, **options)
            dbroles.grant_runtime_privileges(conn, runtime_role)
