"""Generate a realistic fleet fast (PostgreSQL): python manage.py seed_fleet --org SLUG --devices N."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench import seed
from fleet.tenancy import rls, selectors, services


class Command(BaseCommand):
    help = ("Seed an organization with N devices (labels site/tier; last seen an hour ago, offline now), "
            "optional readings and groups, set-based.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True)
        parser.add_argument("--devices", type=int, required=True)
        parser.add_argument("--readings-per-device", type=int, default=0)
        parser.add_argument("--groups", type=int, default=0)
        parser.add_argument("--prefix", default="bench")

    def handle(self, *args, org, devices, readings_per_device, groups, prefix, **options):
        if connection.vendor != "postgresql":
            raise CommandError("seed_fleet needs PostgreSQL (set DATABASE_URL).")
        organization = selectors.organization_by_slug(slug=org) or services.organization_create(slug=org)
        with rls.organization_context(org_id=organization.id):
            seconds = seed.seed_devices(organization=organization, count=devices, prefix=prefix)
            self.stdout.write(f"{devices} devices in {seconds:.2f} s")
            if readings_per_device:
                start = time.perf_counter()
                count = seed.seed_readings(organization=organization, per_device=readings_per_device)
                self.stdout.write(f"{count} readings in {time.perf_counter() - start:.2f} s")
        seed.analyze()  # before anything set-based reads the new rows: RLS predicates are planned from statistics
        if groups:
            with rls.organization_context(org_id=organization.id):
                start = time.perf_counter()
                seed.seed_groups(organization=organization, count=groups)
                self.stdout.write(f"{groups} groups in {time.perf_counter() - start:.2f} s")
