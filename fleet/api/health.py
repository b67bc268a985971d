"""Unauthenticated liveness and readiness probes for load balancers and orchestrators."""

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from fleet.celery import app as celery_app


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
@transaction.non_atomic_requests
def readyz(request):
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"error: {type(exc).__name__}"
    return "ok"


def _check_broker():
    try:
        # A fresh connection to the configured broker, outside Celery's shared producer pool.
        with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"
    return "ok"
