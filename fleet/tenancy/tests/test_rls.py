"""Row-level security on PostgreSQL, exercised as the runtime role the application uses."""

import pytest
from django.db import DatabaseError, connection, transaction

from fleet.tenancy import rls
from fleet.tenancy.tests.factories import ApiKeyFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def scalar(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def rows(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_raw_select_without_where_sees_only_the_current_organization(org, other_org):
    ApiKeyFactory(organization=org)
    ApiKeyFactory(organization=other_org)
    ApiKeyFactory(organization=other_org)
    rls.deactivate()
    assert scalar("SELECT count(*) FROM tenancy_apikey") == 0  # fail closed: nothing set

    rls.activate(org_ids=[org.id])
    assert rows("SELECT DISTINCT org_id FROM tenancy_apikey") == [(org.id,)]
    rls.activate(org_ids=[other_org.id])
    assert scalar("SELECT count(*) FROM tenancy_apikey") == 2
    rls.activate(org_ids=[org.id, other_org.id])
    assert scalar("SELECT count(*) FROM tenancy_apikey") == 3


def test_empty_setting_matches_nothing(org):
    ApiKeyFactory(organization=org)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.org_id', '', true)")
    assert scalar("SELECT count(*) FROM tenancy_apikey") == 0


def test_with_check_refuses_writing_another_organizations_row(org, other_org):
    key = ApiKeyFactory(organization=org)
    rls.activate(org_ids=[org.id])
    with pytest.raises(DatabaseError):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("UPDATE tenancy_apikey SET org_id = %s WHERE id = %s", [other_org.id, key.id])


def test_updates_and_deletes_cannot_reach_other_organizations(org, other_org):
    foreign = ApiKeyFactory(organization=other_org)
    rls.activate(org_ids=[org.id])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tenancy_apikey SET name = 'hijacked' WHERE id = %s", [foreign.id])
        assert cursor.rowcount == 0
        cursor.execute("DELETE FROM tenancy_apikey WHERE id = %s", [foreign.id])
        assert cursor.rowcount == 0


def test_bypass_is_explicit_and_ends_with_its_block(org, other_org, caplog):
    ApiKeyFactory(organization=org)
    ApiKeyFactory(organization=other_org)
    rls.deactivate()
    with caplog.at_level("INFO", logger="fleet.audit"):
        with rls.bypass(reason="unit test"):
            assert scalar("SELECT count(*) FROM tenancy_apikey") == 2
    assert "reason=unit test" in caplog.text
    assert scalar("SELECT count(*) FROM tenancy_apikey") == 0



def test_credential_function_reveals_only_the_org_of_an_exact_hash(org):
    key = ApiKeyFactory(organization=org)
    rls.deactivate()
    from fleet.tenancy.credentials import hash_secret

    assert scalar("SELECT fleet_credential_org('tenancy_apikey', %s)", [hash_secret(key.secret)]) == org.id
    assert scalar("SELECT fleet_credential_org('tenancy_apikey', %s)", ["0" * 64]) is None
    assert scalar("SELECT current_setting('app.rls_bypass', true)") in ("", None)
    with pytest.raises(DatabaseError):
        with transaction.atomic():
            scalar("SELECT fleet_credential_org('auth_user', %s)", ["x"])


def test_every_org_scoped_table_has_forced_rls_with_a_two_sided_policy():
    tables = [
        name
        for (name,) in rows(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'org_id'"
        )
    ]
    assert "tenancy_apikey" in tables and "activity_activityevent" in tables
    for table in tables:
        enabled, forced = rows(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", [table]
        )[0]
        assert enabled and forced, f"{table}: row-level security must be enabled and forced"
        policies = rows("SELECT qual, with_check, cmd FROM pg_policies WHERE tablename = %s", [table])
        assert policies, f"{table}: no policy"
        for qual, with_check, cmd in policies:
            assert qual or with_check, f"{table}: empty policy"
            if cmd == "ALL":
                assert qual and with_check, f"{table}: policy needs USING and WITH CHECK"
            assert "app.org_id" in (qual or with_check), f"{table}: policy does not use app.org_id"


def test_runtime_role_is_neither_superuser_bypassrls_nor_owner():
    role = scalar("SELECT current_user")
    super_, bypass = rows("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")[0]
    assert not super_ and not bypass, f"runtime role {role} must not be superuser or BYPASSRLS"
    owned = rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
    assert owned == [], f"runtime role {role} owns tables: {owned}"


@pytest.mark.django_db(transaction=True)
def test_context_is_refused_outside_a_transaction(org):
    with pytest.raises(RuntimeError):
        rls.activate(org_ids=[org.id])
