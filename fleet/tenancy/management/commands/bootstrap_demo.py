"""Make sure the demo organization exists; on first creation print an API key for it, once."""

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand

from fleet.tenancy import selectors, services

SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo organization and print its first API key (only on first run)."

    def handle(self, *args, **options):
        if selectors.organization_by_slug(slug=SLUG) is not None:
            self.stdout.write(f"Demo organization '{SLUG}' exists (its key was printed on first run).")
            return
        services.organization_create(slug=SLUG, name="Demo")
        self.stdout.write(self.style.SUCCESS(f"Created organization '{SLUG}'. Its API key (shown once, save it):"))
        call_command("create_api_key", org=SLUG, name="demo", stdout=self.stdout)
        port = os.environ.get("PORT", "8000")  # the port `make run` serves on (fleet/gunicorn_conf.py)
        self.stdout.write(f"Try: curl -H 'Authorization: Bearer <key>' http://127.0.0.1:{port}/api/v1/organization")
