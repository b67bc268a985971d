#!/usr/bin/env bash
# Web (gunicorn), worker and scheduler in one terminal; Ctrl-C stops all three.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
pids=()

start() {
  "$@" &
  pids+=($!)
}

stop() {
  trap - INT TERM EXIT
  # Signal only our three processes: they shut their own children down (celery's pool, gunicorn's workers).
  kill -TERM "${pids[@]}" 2>/dev/null
  wait
}
trap stop INT TERM EXIT

start $BIN/gunicorn fleet.wsgi:application --config fleet/gunicorn_conf.py
start $BIN/celery -A fleet worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}"
start $BIN/celery -A fleet beat --loglevel INFO

echo "Fleet is up: http://127.0.0.1:${PORT:-8000}/admin/  http://127.0.0.1:${PORT:-8000}/api/docs/  (Ctrl-C stops)"
wait -n  # if any of the three exits, stop the others
