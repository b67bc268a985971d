#!/usr/bin/env bash
# Web (gunicorn), worker and scheduler in one terminal; Ctrl-C stops all three.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait' INT TERM EXIT

$BIN/gunicorn fleet.wsgi:application --config fleet/gunicorn_conf.py &
$BIN/celery -A fleet worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" &
$BIN/celery -A fleet beat --loglevel INFO &

echo "Fleet is up: http://127.0.0.1:${PORT:-8000}/admin/  http://127.0.0.1:${PORT:-8000}/api/docs/  (Ctrl-C stops)"
wait -n  # if any of the three dies, stop the others
