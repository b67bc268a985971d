"""Row-level security: the current organization, the one audited bypass, and the policy migration op.

The current organization lives in a ContextVar (for Python code) and in the PostgreSQL setting
`app.org_id`, set with `set_config(..., true)` so it ends with the transaction. Policies compare each
row's org_id with that setting and fail closed: an unset or empty setting matches no row.
"""

import contextlib
import logging
from contextvars import ContextVar

from django.conf import settings
from django.db import connection, transaction
from django.db.migrations.operations.base import Operation

audit = logging.getLogger("fleet.audit")

ORG_SETTING = "app.org_id"
BYPASS_SETTING = "app.rls_bypass"

_current_org_ids: ContextVar[tuple] = ContextVar("fleet_org_ids", default=())

# One predicate for every organization-scoped table; `app.org_id` may hold a comma-separated list
# (staff members of several organizations in the admin).
# Each setting is read in a sub-select (an InitPlan; the outer cast keeps ANY on an array, not a
# subquery): evaluated once per statement instead of once per row, which large scans (exports,
# counts, materialization) feel (tenancy migration 0004).
POLICY_PREDICATE = (
    f"org_id = ANY ((SELECT string_to_array(NULLIF(current_setting('{ORG_SETTING}', true), ''), ',')::uuid[])::uuid[])"
    f" OR (SELECT current_setting('{BYPASS_SETTING}', true) = 'on')"
)


def is_postgres(conn=None):
    return (conn or connection).vendor == "postgresql"


def _require_transaction():
    # A transaction-local setting outside a transaction would vanish at once (or worse, with
    # autocommit off, leak into the next request on a pooled connection): refuse it.
    if is_postgres() and not connection.in_atomic_block:
        raise RuntimeError("The organization context can only be set inside transaction.atomic().")


def activate(*, org_ids):
    """Make `org_ids` (one or more UUIDs) the current organization(s) for this transaction."""
    org_ids = tuple(str(org_id) for org_id in org_ids)
    _current_org_ids.set(org_ids)
    if is_postgres():
        _require_transaction()
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [ORG_SETTING, ",".join(org_ids)])


def deactivate():
    _current_org_ids.set(())
    if is_postgres() and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, '', true)", [ORG_SETTING])


def deactivate_context():
    """Forget the Python-side context (end of request); the database setting ends with its transaction."""
    _current_org_ids.set(())


def current_org_ids():
    return _current_org_ids.get()


@contextlib.contextmanager
def organization_context(*, org_id):
    """A transaction with `org_id` as the current organization; for tasks and commands."""
    token = _current_org_ids.set(())
    try:
        with transaction.atomic():
            activate(org_ids=[org_id])
            yield
    finally:
        _current_org_ids.reset(token)


@contextlib.contextmanager
def bypass(*, reason, actor=None):
    """The single, audited way to read or write across organizations (platform staff, sweeps)."""
    audit.info("rls bypass: reason=%s actor=%s", reason, actor or "system")
    if not is_postgres():
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', true)", [BYPASS_SETTING])
        try:
            yield
        finally:
            if not connection.needs_rollback:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, '', true)", [BYPASS_SETTING])


def credential_org_id(*, table, secret_hash):
    """Find which organization holds a credential, and make it current, in one statement.

    Authentication has to read a credential before it knows the organization. On PostgreSQL a
    SECURITY DEFINER function (migration tenancy 0002) looks up only the org_id of the row with that
    exact hash; the bypass is confined to that function. Returns the org id or None.
    """
    if not is_postgres():
        return None
    _require_transaction()
    with connection.cursor() as cursor:
        cursor.execute(*credential_statement(table=table, secret_hash=secret_hash))
        org_id = cursor.fetchone()[0] or None
    _current_org_ids.set((org_id,) if org_id else ())
    return org_id


def credential_statement(*, table, secret_hash):
    """The statement of credential_org_id, for a hot path that runs it without reading its result."""
    return (
        "SELECT set_config(%s, COALESCE(fleet_credential_org(%s, %s)::text, ''), true)",
        [ORG_SETTING, table, secret_hash],
    )


class EnableRowLevelSecurity(Operation):
    """Migration operation: ENABLE + FORCE RLS and the fail-closed org policy on one table."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, table):
        self.table = table

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        quoted = schema_editor.quote_name(self.table)
        schema_editor.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY")
        schema_editor.execute(
            f"CREATE POLICY org_isolation ON {quoted} USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        quoted = schema_editor.quote_name(self.table)
        schema_editor.execute(f"DROP POLICY IF EXISTS org_isolation ON {quoted}")
        schema_editor.execute(f"ALTER TABLE {quoted} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {quoted} DISABLE ROW LEVEL SECURITY")

    def describe(self):
        return f"Enable row-level security on {self.table}"

    def deconstruct(self):
        return (f"{__name__}.{self.__class__.__name__}", [self.table], {})


def runtime_role():
    """The database user the application runs as (from DATABASE_URL)."""
    return settings.DATABASES["default"].get("USER") or ""
