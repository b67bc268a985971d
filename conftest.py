"""Test setup shared by every app.

On PostgreSQL the test database is created and migrated as the owner role, and the tests then run
as the runtime role, so row-level security is exercised exactly as in production.
"""

import os

import pytest
from django.conf import settings

from fleet.tenancy import dbroles, rls

IS_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
HAS_REDIS = bool(settings.REDIS_URL)


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_keepdb):
    from django.test.utils import setup_databases, teardown_databases

    runtime_role = rls.runtime_role()
    with django_db_blocker.unblock():
        with dbroles.as_owner() as conn:
            config = setup_databases(verbosity=0, interactive=False, keepdb=django_db_keepdb)
            dbroles.grant_runtime_privileges(conn, runtime_role)
            if conn.vendor == "postgresql" and runtime_role != conn.settings_dict["USER"]:
                # Test database only: transactional tests end with a flush (TRUNCATE).
                with conn.cursor() as cursor:
                    cursor.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {conn.ops.quote_name(runtime_role)}")
    yield
    with django_db_blocker.unblock():
        with dbroles.as_owner():
            teardown_databases(config, verbosity=0, keepdb=django_db_keepdb)


def pytest_collection_modifyitems(config, items):
    missing = []
    if not IS_POSTGRES:
        if os.environ.get("REQUIRE_POSTGRES"):
            raise pytest.UsageError("REQUIRE_POSTGRES is set but DATABASE_URL is not PostgreSQL.")
        missing.append(("postgres", "needs PostgreSQL: set DATABASE_URL (see README)"))
    if not HAS_REDIS:
        if os.environ.get("REQUIRE_REDIS"):
            raise pytest.UsageError("REQUIRE_REDIS is set but REDIS_URL is empty.")
        missing.append(("redis", "needs Redis: set REDIS_URL (see README)"))
    for marker, reason in missing:
        for item in items:
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    if not IS_POSTGRES:
        terminalreporter.write_sep("!", "PostgreSQL tests (row-level security) were SKIPPED: running on SQLite", red=True)
    if not HAS_REDIS:
        terminalreporter.write_sep("!", "Redis tests were SKIPPED: REDIS_URL is not set", red=True)


@pytest.fixture(autouse=True)
def _presence_keys():
    """Presence (devices.presence) answers polls from Redis only once a flush has run: every test starts
    without its keys, so only the tests that flush use it, and with no memory of what was published."""
    if HAS_REDIS:
        from devices import presence

        client = presence.client()
        keys = list(client.scan_iter(f"{presence.PREFIX}*"))
        if keys:
            client.delete(*keys)
        presence._sent = presence._Sent()


@pytest.fixture(autouse=True)
def _desired_bump_per_statement(request):
    """A test that is not transactional never commits, so the desired-state generation, increased at
    commit (deployments.freshness), would never move: inside such a test it moves at the end of each
    statement instead. Transactional tests keep the production timing."""
    if not IS_POSTGRES:
        return
    marker = request.node.get_closest_marker("django_db")
    if marker is None and "db" not in request.fixturenames:
        return
    if (marker and marker.kwargs.get("transaction")) or "transactional_db" in request.fixturenames:
        return
    from django.db import connection

    from deployments.freshness import BUMP_CONSTRAINT

    request.getfixturevalue("db")
    with connection.cursor() as cursor:
        cursor.execute(f"SET CONSTRAINTS {BUMP_CONSTRAINT} IMMEDIATE")


@pytest.fixture
def org_context(db):
    """Make an organization current for direct service/selector calls in a test."""

    def activate(organization):
        rls.activate(org_ids=[organization.id])
        return organization

    yield activate
    rls.deactivate()


@pytest.fixture
def org(db):
    from fleet.tenancy.tests.factories import OrganizationFactory

    return OrganizationFactory()


@pytest.fixture
def other_org(db):
    from fleet.tenancy.tests.factories import OrganizationFactory

    return OrganizationFactory()


@pytest.fixture
def make_client(db):
    """An APIClient authenticated with a fresh API key of `organization` with `role`."""
    from rest_framework.test import APIClient

    from fleet.tenancy.tests.factories import ApiKeyFactory

    def make(organization, role="admin"):
        api_key = ApiKeyFactory(organization=organization, role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
        client.api_key = api_key
        return client

    return make


@pytest.fixture
def client_a(make_client, org):
    return make_client(org)


@pytest.fixture
def client_b(make_client, other_org):
    return make_client(other_org)


@pytest.fixture
def rate_window():
    """Rate limits count in fixed windows: a test that expects a 429 waits out a minute boundary that
    is about to pass, so its requests all land in one window."""
    import time

    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.5)
