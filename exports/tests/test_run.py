"""The worker path on local files: contents, formats, idempotency, cancel, sweeper, expiry."""

import datetime as dt
import json

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from devices.tests.factories import DeviceFactory
from exports import services
from exports.models import ExportJob, Status
from exports.tests.factories import ExportJobFactory
from exports.tests.helpers import T0, add_readings, csv_rows, expected_annotations, expected_readings, read_zip
from fleet.tenancy import rls
from telemetry.tests.factories import AnnotationFactory

pytestmark = pytest.mark.django_db


def job_state(job):
    with rls.bypass(reason="test"):
        return ExportJob.objects.get(id=job.id)


def run(job):
    return services.export_run(job_id=str(job.id), org_id=str(job.organization_id))


def stored(job):
    with default_storage.open(job.file_name, "rb") as handle:
        return handle.read()


def test_organization_export_equals_a_direct_query(org, other_org, small_chunks, local_storage):
    a, b = DeviceFactory(organization=org), DeviceFactory(organization=org)
    add_readings(org, a, 30)
    add_readings(org, b, 12, metric="hum", start=T0 + dt.timedelta(seconds=30))
    add_readings(org, a, 5, start=T0 - dt.timedelta(days=3))  # before the range
    add_readings(other_org, DeviceFactory(organization=other_org), 9)  # another organization
    AnnotationFactory.create_batch(3, organization=org, device=a)
    AnnotationFactory(organization=org, device=b, ts_from=T0 - dt.timedelta(days=9), ts_to=None)  # out of range
    job = ExportJobFactory(organization=org, range_from=T0, range_to=T0 + dt.timedelta(days=1))

    assert run(job) == "ready"
    job = job_state(job)
    assert job.status == Status.READY and job.progress == 1.0 and job.attempts == 1
    assert job.reading_count == 42 and job.annotation_count == 3
    assert job.expires_at > timezone.now()
    assert (local_storage / job.file_name).exists()
    data = stored(job)
    assert job.size_bytes == len(data)
    members, manifest = read_zip(data)
    assert set(members) == {"readings.csv", "annotations.csv", "manifest.json"}
    header, rows = csv_rows(members["readings.csv"])
    assert header == ["ts", "device", "device_id", "metric", "value"]
    assert rows == expected_readings(org, T0, T0 + dt.timedelta(days=1))
    header, rows = csv_rows(members["annotations.csv"])
    assert rows == expected_annotations(org)[1:]  # the first (oldest) one is outside the range
    assert manifest["reading_count"] == 42 and manifest["annotation_count"] == 3
    assert manifest["members"]["readings.csv"]["rows"] == 42
    assert manifest["from"] == "2026-01-01T00:00:00Z" and manifest["to"] == "2026-01-02T00:00:00Z"

    # idempotent: the task delivered again does nothing
    assert run(job) == "skipped"
    assert job_state(job).attempts == 1


def test_device_scope_jsonl_and_readings_only(org, small_chunks):
    a, b = DeviceFactory(organization=org), DeviceFactory(organization=org)
    add_readings(org, a, 10)
    add_readings(org, b, 10)
    job = ExportJobFactory(
        organization=org, scope_type="DEVICE", scope_id=a.id, includes=["READINGS"], format="jsonl",
        range_from=T0, range_to=T0 + dt.timedelta(days=1),
    )
    assert run(job) == "ready"
    members, manifest = read_zip(stored(job_state(job)))
    assert set(members) == {"readings.jsonl", "manifest.json"}
    lines = [json.loads(line) for line in members["readings.jsonl"].decode().splitlines()]
    expected = expected_readings(org, T0, T0 + dt.timedelta(days=1), device=a)
    assert [[r["ts"], r["device"], r["device_id"], r["metric"], r["value"]] for r in lines] == expected
    assert manifest["scope_id"] == str(a.id)


def test_an_empty_export_is_a_valid_zip(org):
    job = ExportJobFactory(organization=org)
    assert run(job) == "ready"
    members, manifest = read_zip(stored(job_state(job)))
    assert csv_rows(members["readings.csv"])[1] == [] and manifest["reading_count"] == 0


def test_cancel_while_running_stops_the_worker_and_removes_the_file(org, small_chunks, settings, local_storage):
    device = DeviceFactory(organization=org)
    add_readings(org, device, 30)
    job = ExportJobFactory(organization=org)
    original = services.Progress.beat

    def cancel_on_second_beat(self):
        if self.readings >= 14:
            services.export_cancel_or_delete(job=job_state(job))
        return original(self)

    services.Progress.beat = cancel_on_second_beat
    try:
        assert run(job) == "stopped"
    finally:
        services.Progress.beat = original
    state = job_state(job)
    assert state.status == Status.CANCELLED and state.file_name == ""
    assert not list(local_storage.rglob("*.zip"))


def test_a_failure_is_recorded_with_a_clear_error(org, monkeypatch):
    job = ExportJobFactory(organization=org)

    def broken(name):
        raise OSError("disk full")

    monkeypatch.setattr(services, "_open_for_write", broken)
    assert run(job) == "failed"
    state = job_state(job)
    assert state.status == Status.FAILED and state.error == "OSError: disk full"


def test_a_storage_failure_mid_member_fails_the_job_and_removes_the_file(org, settings, monkeypatch, local_storage):
    """The zip is half written when storage fails: the job records the error, the file goes."""
    from exports import archive

    monkeypatch.setattr(archive, "FLUSH_BYTES", 1024)  # many pieces, so the failure comes mid-member
    settings.EXPORT_CHUNK_ROWS = 500
    add_readings(org, DeviceFactory(organization=org), 2_000, step_s=1)
    job = ExportJobFactory(organization=org, includes=["READINGS"], range_from=T0, range_to=T0 + dt.timedelta(days=2))
    written = {"bytes": 0}
    original = archive.ForwardOnlyWriter.write

    def filling_up(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 8 * 1024:
            raise OSError("disk full")
        return original(self, data)

    monkeypatch.setattr(archive.ForwardOnlyWriter, "write", filling_up)
    assert run(job) == "failed"
    state = job_state(job)
    assert state.status == Status.FAILED and state.error == "OSError: disk full"
    assert not list(local_storage.rglob("*.zip"))


def test_sweeper_requeues_stale_jobs_and_fails_them_after_three_attempts(org, settings, django_capture_on_commit_callbacks):
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_S + 5)
    dead = ExportJobFactory(organization=org, status=Status.RUNNING, attempts=1, heartbeat_at=stale)
    fresh = ExportJobFactory(organization=org, status=Status.RUNNING, attempts=1, heartbeat_at=now)
    hopeless = ExportJobFactory(organization=org, status=Status.RUNNING, attempts=3, heartbeat_at=stale)
    with django_capture_on_commit_callbacks() as callbacks:
        requeued, failed = services.exports_sweep(now=now)
    assert (requeued, failed) == (1, 1)
    assert len(callbacks) == 1
    assert job_state(dead).status == Status.PENDING
    assert job_state(fresh).status == Status.RUNNING
    hopeless = job_state(hopeless)
    assert hopeless.status == Status.FAILED
    assert hopeless.error == "The export worker stopped responding 3 times (no heartbeat for 120 s); giving up."
    # the re-queued job then completes on its next run (attempt 2)
    assert run(dead) == "ready"
    assert job_state(dead).attempts == 2


def test_a_redelivered_message_takes_over_a_stale_running_job(org, settings):
    stale = timezone.now() - dt.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_S + 5)
    job = ExportJobFactory(organization=org, status=Status.RUNNING, attempts=1, heartbeat_at=stale)
    assert run(job) == "ready"
    assert job_state(job).attempts == 2
    running = ExportJobFactory(organization=org, status=Status.RUNNING, attempts=1, heartbeat_at=timezone.now())
    assert run(running) == "skipped"


def test_expiry_deletes_files(org, local_storage):
    job = ExportJobFactory(organization=org)
    run(job)
    job = job_state(job)
    assert (local_storage / job.file_name).exists()
    assert services.exports_expire(now=job.expires_at - dt.timedelta(seconds=1)) == 0
    assert services.exports_expire(now=job.expires_at + dt.timedelta(seconds=1)) == 1
    assert job_state(job).status == Status.EXPIRED
    assert not (local_storage / job.file_name).exists()


def test_tasks_call_the_services(org):
    from exports import tasks

    job = ExportJobFactory(organization=org)
    assert tasks.export_run.run(str(job.id), str(org.id)) == "ready"
    assert tasks.export_sweep.run() == (0, 0)
    assert tasks.export_expire.run() == 0


def test_memory_stays_flat_as_the_export_grows(org, settings):
    """Peak traced memory of the export for 4,000 vs 24,000 rows: bounded by a chunk, not the file."""
    import tracemalloc

    settings.EXPORT_CHUNK_ROWS = 2000
    settings.EXPORT_FETCH_ROWS = 500
    peaks = []
    for n in (4000, 24000):
        device = DeviceFactory(organization=org)
        add_readings(org, device, n, step_s=1)
        job = ExportJobFactory(organization=org, scope_type="DEVICE", scope_id=device.id, includes=["READINGS"],
                               range_from=T0, range_to=T0 + dt.timedelta(days=1))
        tracemalloc.start()
        try:
            assert run(job) == "ready"
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert job_state(job).reading_count == n
    small, large = peaks
    print(f"peak traced memory: {small / 1e6:.2f} MB for 4k rows, {large / 1e6:.2f} MB for 24k rows")
    assert large < small * 1.5 + 256 * 1024


def test_device_group_export_covers_the_group_members(client_a, org, small_chunks, local_storage):
    from devices import services as device_services
    from fleet.activity.services import SYSTEM

    inside = DeviceFactory(organization=org, labels={"site": "berlin"})
    outside = DeviceFactory(organization=org, labels={"site": "paris"})
    add_readings(org, inside, 7)
    add_readings(org, outside, 5)
    AnnotationFactory(organization=org, device=inside)
    AnnotationFactory(organization=org, device=outside)
    with rls.bypass(reason="test setup"):
        group = device_services.device_group_create(
            organization=org, actor=SYSTEM, name="Berlin", slug="berlin", selector={"match_labels": {"site": "berlin"}}
        )
    response = client_a.post("/api/v1/exports", {
        "scope_type": "DEVICE_GROUP", "scope_id": str(group.id), "from": T0.isoformat(),
        "to": (T0 + dt.timedelta(days=1)).isoformat(), "includes": ["READINGS", "ANNOTATIONS"]}, format="json")
    assert response.status_code == 201, response.json()
    job = job_state(ExportJob(id=response.json()["id"]))
    assert run(job) == "ready"
    job = job_state(job)
    assert job.reading_count == 7
    members, manifest = read_zip(stored(job))
    _, rows = csv_rows(members["readings.csv"])
    assert rows == expected_readings(org, T0, T0 + dt.timedelta(days=1), device=inside)
    assert manifest["scope_type"] == "DEVICE_GROUP" and manifest["scope_id"] == str(group.id)
