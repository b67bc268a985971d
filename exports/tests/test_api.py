import datetime as dt
import uuid
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devices.tests.factories import DeviceFactory
from exports import services
from exports.models import ExportJob, Status
from exports.tests.factories import ExportJobFactory
from exports.tests.helpers import add_readings, read_zip
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def body(**overrides):
    return {"scope_type": "ORGANIZATION", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z",
            "includes": ["READINGS", "ANNOTATIONS"], **overrides}


def ready_job(org):
    job = ExportJobFactory(organization=org)
    assert services.export_run(job_id=str(job.id), org_id=str(org.id)) == "ready"
    return job


def test_submit_device_export_is_pending_and_enqueued_on_commit(client_a, org, django_capture_on_commit_callbacks):
    device = DeviceFactory(organization=org)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_a.post("/api/v1/exports", body(scope_type="DEVICE", scope_id=str(device.id)), format="json")
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "PENDING" and job["scope_type"] == "DEVICE" and job["scope_id"] == str(device.id)
    assert job["from"] == "2026-01-01T00:00:00Z" and job["to"] == "2026-02-01T00:00:00Z"
    assert job["includes"] == ["READINGS", "ANNOTATIONS"] and job["format"] == "csv"
    assert job["requested_by"] and job["download_url"] is None
    assert len(callbacks) == 1  # export_run.delay, after the commit
    events = client_a.get("/api/v1/activity", {"verb": "export.requested"}).json()["events"]
    assert [e["subject"]["id"] for e in events] == [job["id"]]


def test_submit_validation(client_a, client_b, org, other_org):
    foreign = DeviceFactory(organization=other_org)

    def fields(**overrides):
        response = client_a.post("/api/v1/exports", body(**overrides), format="json")
        assert response.status_code == 400, response.content
        return set(response.json()["fields"])

    assert fields(to="2025-12-01T00:00:00Z") == {"to"}
    assert fields(to="2027-03-01T00:00:00Z") == {"to"}  # more than 400 days
    assert fields(includes=[]) == {"includes"}
    assert fields(includes=["VIDEOS"]) == {"includes.0"}
    assert fields(scope_type="GALAXY") == {"scope_type"}
    assert fields(format="xml") == {"format"}
    assert fields(scope_type="DEVICE") == {"scope_id"}
    assert fields(scope_type="DEVICE_GROUP") == {"scope_id"}
    response = client_a.post("/api/v1/exports", body(scope_type="DEVICE_GROUP", scope_id=str(uuid.uuid4())), format="json")
    assert response.status_code == 404  # unknown (or another organization's) group
    # scopes outside the organization: 404
    assert client_a.post("/api/v1/exports", body(scope_type="DEVICE", scope_id=str(foreign.id)), format="json").status_code == 404
    assert client_a.post("/api/v1/exports", body(scope_id=str(other_org.id)), format="json").status_code == 404
    assert client_a.post("/api/v1/exports", body(scope_id=str(org.id)), format="json").status_code == 201


def test_running_limit_is_429(client_a, org, settings):
    settings.EXPORT_MAX_RUNNING_PER_ORG = 2
    ExportJobFactory(organization=org, status=Status.RUNNING)
    ExportJobFactory(organization=org, status=Status.READY)
    assert client_a.post("/api/v1/exports", body(), format="json").status_code == 201
    response = client_a.post("/api/v1/exports", body(), format="json")
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited" and response["Retry-After"]


def test_list_and_filters_and_query_count(client_a, org, django_assert_max_num_queries):
    ExportJobFactory.create_batch(2, organization=org, status=Status.READY)
    ExportJobFactory(organization=org, status=Status.FAILED)
    assert client_a.get("/api/v1/exports").json()["total"] == 3
    assert client_a.get("/api/v1/exports", {"status": "FAILED"}).json()["total"] == 1
    assert client_a.get("/api/v1/exports", {"scope_type": "DEVICE"}).json()["total"] == 0
    assert client_a.get("/api/v1/exports", {"status": "nope"}).status_code == 400
    with django_assert_max_num_queries(8) as small:
        client_a.get("/api/v1/exports")
    ExportJobFactory.create_batch(20, organization=org)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client_a.get("/api/v1/exports").json()["total"] == 23


def test_ready_job_gets_a_fresh_signed_url_that_downloads_without_a_key(client_a, org):
    device = DeviceFactory(organization=org)
    add_readings(org, device, 5)
    job = ready_job(org)
    first = client_a.get(f"/api/v1/exports/{job.id}").json()
    assert first["status"] == "READY" and first["reading_count"] == 5 and first["progress"] == 1.0
    url = first["download_url"]
    assert url.startswith("http://testserver/api/v1/exports/") and "signature=" in url
    parsed = urlparse(url)
    response = APIClient().get(parsed.path, parse_qs(parsed.query))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f'filename="export-{job.id}.zip"' in response["Content-Disposition"]
    data = b"".join(response.streaming_content)
    members, manifest = read_zip(data)
    assert manifest["reading_count"] == 5
    # a fresh URL on every call (a later expiry)
    later = services.export_download_url(job=job_state(job), now=timezone.now() + dt.timedelta(seconds=5))
    assert later != parsed.path + "?" + parsed.query


def job_state(job):
    with rls.bypass(reason="test"):
        return ExportJob.objects.get(id=job.id)


def test_signed_url_tampering_expiry_and_other_organizations_are_404(org, other_org):
    job = job_state(ready_job(org))
    other = job_state(ready_job(other_org))
    client = APIClient()
    url = services.export_download_url(job=job)
    path, _, query = url.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    assert client.get(url).status_code == 200

    def status(p, q):
        return client.get(f"{p}?{urlencode(q)}").status_code

    assert status(path, {**params, "signature": params["signature"][:-1] + ("A" if params["signature"][-1] != "A" else "B")}) == 404
    assert status(path, {**params, "expires": int(params["expires"]) + 3600}) == 404  # extended expiry
    assert status(path, {"expires": params["expires"]}) == 404
    assert status(path, {}) == 404
    # the signature of one job does not open another organization's job
    assert status(f"/api/v1/exports/{other.id}/download", params) == 404
    # expired
    old = services.export_download_url(job=job, now=timezone.now() - dt.timedelta(seconds=901))
    response = client.get(old)
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    # not READY any more
    with rls.bypass(reason="test"):
        ExportJob.objects.filter(id=job.id).update(status=Status.EXPIRED)
    assert client.get(url).status_code == 404


def test_other_organization_cannot_see_or_cancel(client_a, client_b, org):
    job = ready_job(org)
    assert client_b.get(f"/api/v1/exports/{job.id}").status_code == 404
    assert client_b.delete(f"/api/v1/exports/{job.id}").status_code == 404
    assert str(job.id) not in client_b.get("/api/v1/exports").content.decode()
    assert client_a.get(f"/api/v1/exports/{job.id}").status_code == 200


def test_delete_cancels_an_active_job_and_deletes_a_finished_one(client_a, org, local_storage, django_capture_on_commit_callbacks):
    pending = ExportJobFactory(organization=org)
    assert client_a.delete(f"/api/v1/exports/{pending.id}").status_code == 204
    assert job_state(pending).status == Status.CANCELLED
    assert services.export_run(job_id=str(pending.id), org_id=str(org.id)) == "skipped"  # the queued task is a no-op
    done = job_state(ready_job(org))
    assert (local_storage / done.file_name).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert client_a.delete(f"/api/v1/exports/{done.id}").status_code == 204
    assert not (local_storage / done.file_name).exists()
    assert client_a.get(f"/api/v1/exports/{done.id}").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        assert client_a.delete(f"/api/v1/exports/{pending.id}").status_code == 204  # a cancelled one is deleted
    assert client_a.get(f"/api/v1/exports/{pending.id}").status_code == 404


def test_viewer_can_read_but_not_submit(make_client, org):
    viewer = make_client(org, role="viewer")
    assert viewer.get("/api/v1/exports").status_code == 200
    assert viewer.post("/api/v1/exports", body(), format="json").status_code == 403


def test_admin_rerun_action_and_progress_display(org, org_context):
    from exports.admin import ExportJobAdmin

    job = ExportJobFactory(organization=org, status=Status.FAILED, attempts=3, error="boom")
    org_context(org)  # the admin runs under its staff member's organizations
    services.export_rerun(job=job_state(job))
    state = job_state(job)
    assert state.status == Status.PENDING and state.attempts == 0 and state.error == ""
    assert 'value="0"' in ExportJobAdmin.progress_bar(None, state)
