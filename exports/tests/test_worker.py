"""Real parts: a Celery worker on the Redis broker, and a worker killed mid-export then recovered.

Both need committed data visible to other threads/processes: transactional tests on PostgreSQL.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from devices.tests.factories import DeviceFactory
from exports import services
from exports.models import ExportJob, Status
from exports.tests.factories import ExportJobFactory
from exports.tests.helpers import T0, add_readings, csv_rows, expected_annotations, expected_readings, read_zip
from fleet.tenancy import rls
from telemetry.tests.factories import AnnotationFactory

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def job_state(job_id):
    with rls.bypass(reason="test"):
        return ExportJob.objects.get(id=job_id)


def wait_for(predicate, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


@pytest.fixture
def worker(settings):
    """An embedded Celery worker (solo pool, prefetch 1) consuming from Redis db REDIS_URL."""
    from celery.contrib.testing.worker import start_worker

    from fleet.celery import app

    app.conf.broker_url = settings.REDIS_URL
    app.conf.task_always_eager = False
    app.control.purge()
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30) as running:
        yield running
    app.control.purge()


def download(client, job_id):
    url = client.get(f"/api/v1/exports/{job_id}").json()["download_url"]
    parsed = urlparse(url)
    response = APIClient().get(f"{parsed.path}?{parsed.query}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_export_round_trip_through_a_real_worker_on_redis(worker, client_a, org, settings):
    settings.EXPORT_CHUNK_ROWS = 25
    a, b = DeviceFactory(organization=org), DeviceFactory(organization=org)
    add_readings(org, a, 120)
    add_readings(org, b, 80, metric="hum")
    AnnotationFactory.create_batch(2, organization=org, device=a)
    body = {"scope_type": "ORGANIZATION", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
            "includes": ["READINGS", "ANNOTATIONS"]}
    created = client_a.post("/api/v1/exports", body, format="json")
    assert created.status_code == 201
    job_id = created.json()["id"]  # enqueued on commit, picked up by the worker from Redis
    wait_for(lambda: client_a.get(f"/api/v1/exports/{job_id}").json()["status"] in ("READY", "FAILED"))
    state = job_state(job_id)
    assert state.status == Status.READY, state.error
    members, manifest = read_zip(download(client_a, job_id))
    assert csv_rows(members["readings.csv"])[1] == expected_readings(org, T0, T0 + dt.timedelta(days=1))
    assert csv_rows(members["annotations.csv"])[1] == expected_annotations(org)
    assert manifest["reading_count"] == 200 and state.attempts == 1


SLOW_EXPORT = """
import sys
import django
django.setup()
from django.conf import settings
settings.EXPORT_CHUNK_ROWS = 10
settings.EXPORT_TEST_DELAY_S = 0.3
from exports import services
print(services.export_run(job_id=sys.argv[1], org_id=sys.argv[2]), flush=True)
"""


def test_a_worker_killed_mid_export_is_recovered_by_the_sweeper(worker, client_a, org, settings, local_storage):
    device = DeviceFactory(organization=org)
    add_readings(org, device, 200)
    job = ExportJobFactory(organization=org, includes=["READINGS"], range_from=T0, range_to=T0 + dt.timedelta(days=1))
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        "DATABASE_URL": f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(local_storage),
        "REDIS_URL": settings.REDIS_URL,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, str(job.id), str(org.id)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # the first heartbeat (after the first chunk) shows it is streaming
        first = wait_for(lambda: (s := job_state(job.id)).reading_count > 0 and s, timeout=60)
        assert first.status == Status.RUNNING and first.attempts == 1
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    dead = job_state(job.id)
    assert dead.status == Status.RUNNING and 0 < dead.reading_count < 200
    # nothing happens while the heartbeat is fresh ...
    assert services.exports_sweep() == (0, 0)
    # ... once it is stale the sweeper re-queues it (on commit, to Redis) and the worker finishes it
    requeued, failed = services.exports_sweep(
        now=timezone.now() + dt.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_S + 1)
    )
    assert (requeued, failed) == (1, 0)
    wait_for(lambda: job_state(job.id).status in (Status.READY, Status.FAILED))
    state = job_state(job.id)
    assert state.status == Status.READY and state.attempts == 2 and state.reading_count == 200
    members, _ = read_zip(download(client_a, job.id))
    assert csv_rows(members["readings.csv"])[1] == expected_readings(org, T0, T0 + dt.timedelta(days=1))
