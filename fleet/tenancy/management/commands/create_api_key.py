"""Print a new API key for an organization, alone on stdout (for scripts)."""

from django.core.management.base import BaseCommand, CommandError

from fleet.activity import services as activity
from fleet.tenancy import rls, selectors, services
from fleet.tenancy.models import Role


class Command(BaseCommand):
    help = "Create an API key for an organization and print the secret (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--create-org", action="store_true", help="create the organization if missing")
        parser.add_argument("--name", default="cli", help="key name")
        parser.add_argument("--role", default=Role.ADMIN, choices=Role.values)

    def handle(self, *args, org, create_org, name, role, **options):
        organization = selectors.organization_by_slug(slug=org)
        if organization is None:
            if not create_org:
                raise CommandError(f"No organization {org!r} (use --create-org).")
            organization = services.organization_create(slug=org)
        with rls.organization_context(org_id=organization.id):
            api_key, secret = services.api_key_create(organization=organization, name=name, role=role)
            activity.record(
                organization=organization,
                actor=activity.Actor(type="system", label="create_api_key"),
                verb="api_key.created",
                subject_type="api_key",
                subject_id=api_key.id,
                data={"name": name, "role": role, "prefix": api_key.prefix},
            )
        self.stdout.write(secret)
