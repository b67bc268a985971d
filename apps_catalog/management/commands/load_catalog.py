"""`manage.py load_catalog FILE.json`: upsert public catalog entries (idempotent)."""

import json

from django.core.management.base import BaseCommand, CommandError

from apps_catalog import services
from apps_catalog.catalog_fixture import DEFAULT_FIXTURE
from fleet.errors import DomainError


class Command(BaseCommand):
    help = "Load (upsert) public model catalog entries from a JSON file; safe to run repeatedly."

    def add_arguments(self, parser):
        parser.add_argument(
            "file", nargs="?", default=str(DEFAULT_FIXTURE), help="Catalog JSON (default: the shipped public catalog)."
        )

    def handle(self, *args, file, **options):
        try:
            with open(file, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            counts = services.catalog_load(data=data)
        except DomainError as exc:
            field = next(iter(exc.fields), "")
            raise CommandError(f"{file}: {field + ': ' if field else ''}{exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {counts['capabilities']} capabilities, {counts['models']} models, "
                f"{counts['variants']} variants from {file}."
            )
        )
