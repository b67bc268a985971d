#!/usr/bin/env python
"""Create Fleet's PostgreSQL roles and database (idempotent) and print the URLs to use.

    fleet_owner  LOGIN CREATEDB            owns the tables, runs migrations (MIGRATION_DATABASE_URL)
    fleet_app    LOGIN, no superuser,      the runtime role: row-level security always applies (DATABASE_URL)
                 no BYPASSRLS, owns nothing

Connects as PG_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
--env prints `export …` lines for a shell; --require exits 1 (with the reason) when unreachable.
"""

import argparse
import os
import sys

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = os.environ.get("PG_HOST", "127.0.0.1")
PORT = os.environ.get("PG_PORT", "5432")
DATABASE = os.environ.get("PG_DATABASE", "fleet")
OWNER, RUNTIME = "fleet_owner", "fleet_app"
PASSWORD = os.environ.get("PG_ROLE_PASSWORD", "fleet")


def setup():
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        for role, options in ((OWNER, "LOGIN CREATEDB"), (RUNTIME, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB")):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(f"{verb} ROLE {{}} {options} PASSWORD {{}}").format(sql.Identifier(role), sql.Literal(PASSWORD))
            )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(OWNER)))


def url(role):
    return f"postgresql://{role}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", action="store_true", help="print export lines")
    parser.add_argument("--require", action="store_true", help="fail when PostgreSQL is unreachable")
    args = parser.parse_args()
    try:
        setup()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"PostgreSQL is not reachable at {ADMIN_URL}: {reason}", file=sys.stderr)
        return 1 if args.require else 0
    if args.env:
        print(f"export DATABASE_URL={url(RUNTIME)}")
        print(f"export MIGRATION_DATABASE_URL={url(OWNER)}")
    else:
        print(f"PostgreSQL ready: DATABASE_URL={url(RUNTIME)} MIGRATION_DATABASE_URL={url(OWNER)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
