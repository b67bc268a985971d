"""The two database roles: an owner that runs migrations and a runtime role that serves requests.

`manage.py migrate` (our override) and the test database setup switch the default connection to
MIGRATION_DATABASE_URL, migrate, then grant the runtime role plain DML on every table.
"""

import contextlib

import dj_database_url
from django.conf import settings
from django.db import connections

CREDENTIAL_KEYS = ("USER", "PASSWORD", "HOST", "PORT")


def owner_settings():
    url = settings.MIGRATION_DATABASE_URL
    return dj_database_url.parse(url) if url else None


@contextlib.contextmanager
def as_owner(alias="default"):
    """Run the body on the owner role's credentials (no-op when no owner URL is configured)."""
    owner = owner_settings()
    conn = connections[alias]
    if owner is None or conn.vendor != "postgresql":
        yield conn
        return
    saved = {key: conn.settings_dict.get(key) for key in CREDENTIAL_KEYS}
    conn.close()
    conn.settings_dict.update({key: owner.get(key) for key in CREDENTIAL_KEYS})
    try:
        yield conn
    finally:
        conn.close()
        conn.settings_dict.update(saved)


def grant_runtime_privileges(conn, role):
    """Plain DML for the runtime role; it never owns a table, so RLS always applies to it."""
    if conn.vendor != "postgresql" or not role or role == conn.settings_dict.get("USER"):
        return
    quoted = conn.ops.quote_name(role)
    with conn.cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
