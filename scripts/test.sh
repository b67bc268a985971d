#!/usr/bin/env bash
# Runs the whole suite. Uses DATABASE_URL / REDIS_URL when set; otherwise a PostgreSQL on
# 127.0.0.1:5432 and a Redis on 127.0.0.1:6379 when reachable; otherwise SQLite, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if [ -z "${DATABASE_URL:-}" ]; then
  if pg_env="$($PY scripts/pg_setup.py --env)" && [ -n "$pg_env" ]; then
    eval "$pg_env"
  else
    echo "!!! PostgreSQL is not reachable: the suite runs on SQLite and the row-level-security tests are SKIPPED." >&2
  fi
fi
if [ -z "${REDIS_URL:-}" ]; then
  if $PY -c "import redis; redis.Redis(host='127.0.0.1', port=6379, socket_timeout=1).ping()" 2>/dev/null; then
    export REDIS_URL=redis://127.0.0.1:6379/15
  else
    echo "!!! Redis is not reachable: the Redis-backed tests are SKIPPED." >&2
  fi
fi
export DATABASE_URL REDIS_URL="${REDIS_URL:-}"
exec $PY -m pytest "$@"
