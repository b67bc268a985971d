"""Row-level security of the catalog and app tables (PostgreSQL only)."""

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from apps_catalog.models import App, CatalogModel, ModelCapability, ModelVariant
from apps_catalog.tests.factories import AppFactory, CatalogModelFactory, ModelVariantFactory
from fleet.tenancy import rls

pytestmark = pytest.mark.postgres

APP_TABLES = [
    "apps_catalog_catalogmodel",
    "apps_catalog_modelvariant",
    "apps_catalog_app",
    "apps_catalog_apptarget",
    "apps_catalog_appkey",
    "apps_catalog_capabilityslot",
    "apps_catalog_inferenceconfig",
    "apps_catalog_inferencerequestlog",
]


def test_every_org_table_has_forced_rls(db):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
            FROM pg_class c JOIN information_schema.columns col
              ON col.table_name = c.relname AND col.column_name = 'org_id' AND col.table_schema = 'public'
            WHERE c.relname LIKE 'apps_catalog_%%'
            """
        )
        rows = {name: (enabled, forced) for name, enabled, forced in cursor.fetchall()}
    assert set(rows) == set(APP_TABLES)
    assert all(rows[table] == (True, True) for table in APP_TABLES), rows


def test_only_public_rows_visible_without_an_organization(org):
    AppFactory(organization=org)
    CatalogModelFactory(organization=org)
    with transaction.atomic():
        assert App.objects.count() == 0  # fail-closed
        assert not CatalogModel.objects.filter(organization__isnull=False).exists()
        assert CatalogModel.objects.count() == 7  # the public catalog is public
    assert ModelCapability.objects.count() == 5  # global


def test_public_rows_visible_private_rows_isolated(org, other_org, org_context):
    CatalogModelFactory(organization=org, name="mine")
    ModelVariantFactory(model=CatalogModelFactory(organization=other_org, name="theirs"))
    AppFactory(organization=other_org)
    org_context(org)
    names = set(CatalogModel.objects.values_list("name", flat=True))  # no filter at all: RLS only
    assert "mine" in names and "yolov8n" in names and "theirs" not in names
    assert not ModelVariant.objects.filter(model__name="theirs").exists()
    assert App.objects.count() == 0


def test_public_rows_are_not_writable_under_rls(org, org_context):
    org_context(org)
    public = CatalogModel.objects.filter(organization__isnull=True).first()
    assert CatalogModel.objects.filter(id=public.id).update(description="hijacked") == 0
    assert CatalogModel.objects.filter(id=public.id).delete()[0] == 0
    with pytest.raises(ProgrammingError):  # new row violates the policy
        with transaction.atomic():
            CatalogModel.objects.create(organization=None, name="sneaky", capability=public.capability)
    with pytest.raises(ProgrammingError):
        with transaction.atomic():
            ModelVariant.objects.filter(organization__isnull=True)  # readable…
            ModelVariant.objects.create(
                model=public, organization=None, name="x", version="1", format="onnx", quantization="int8"
            )
    public.refresh_from_db()
    assert public.description != "hijacked"


def test_other_organizations_rows_are_not_writable(org, other_org, org_context):
    theirs = CatalogModelFactory(organization=other_org)
    org_context(org)
    with pytest.raises(ProgrammingError):
        with transaction.atomic():
            CatalogModel.objects.create(organization=other_org, name="planted", capability=theirs.capability)
    assert CatalogModel.objects.filter(id=theirs.id).update(name="x") == 0
    rls.deactivate()
