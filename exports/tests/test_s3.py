"""The S3 path for real: django-storages against moto's S3 server on loopback (no mocks in-process)."""

import datetime as dt

import boto3
import pytest
import requests

from devices.tests.factories import DeviceFactory
from exports import services
from exports.models import ExportJob, Status
from exports.tests.factories import ExportJobFactory
from exports.tests.helpers import T0, add_readings, csv_rows, expected_readings, read_zip
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db
BUCKET = "fleet-exports-test"


@pytest.fixture
def s3(settings, monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, **credentials)
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "default_acl": None,
                "file_overwrite": True,
                "querystring_auth": True,
                "addressing_style": "path",
                "signature_version": "s3v4",
            },
        },
    }
    yield client
    server.stop()


def job_state(job):
    with rls.bypass(reason="test"):
        return ExportJob.objects.get(id=job.id)


def test_export_streams_to_s3_and_the_presigned_url_downloads_it(s3, org, client_a, local_storage, settings):
    settings.EXPORT_CHUNK_ROWS = 10
    device = DeviceFactory(organization=org)
    add_readings(org, device, 45)
    job = ExportJobFactory(organization=org, range_from=T0, range_to=T0 + dt.timedelta(days=1))
    assert services.export_run(job_id=str(job.id), org_id=str(org.id)) == "ready"
    state = job_state(job)
    assert state.status == Status.READY
    head = s3.head_object(Bucket=BUCKET, Key=state.file_name)
    assert head["ContentLength"] == state.size_bytes
    assert not list(local_storage.rglob("*")), "nothing written to local disk"

    url = client_a.get(f"/api/v1/exports/{job.id}").json()["download_url"]
    assert url.startswith(s3.meta.endpoint_url) and "X-Amz-Signature=" in url and "X-Amz-Expires=900" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    members, manifest = read_zip(response.content)
    assert csv_rows(members["readings.csv"])[1] == expected_readings(org, T0, T0 + dt.timedelta(days=1))
    assert manifest["reading_count"] == 45
    # each call presigns anew
    assert client_a.get(f"/api/v1/exports/{job.id}").json()["download_url"].startswith(s3.meta.endpoint_url)

    assert services.exports_expire(now=state.expires_at + dt.timedelta(seconds=1)) == 1
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_a_larger_export_is_a_multipart_upload(s3, org, settings, monkeypatch):
    """Parts of 64 KB here (5 MB in production): the zip goes up part by part, never whole."""
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 64 * 1024)
    settings.AWS_S3_FILE_BUFFER_SIZE = 64 * 1024
    settings.EXPORT_CHUNK_ROWS = 5000
    device = DeviceFactory(organization=org)
    add_readings(org, device, 20_000, step_s=1)
    job = ExportJobFactory(organization=org, includes=["READINGS"], range_from=T0, range_to=T0 + dt.timedelta(days=2))
    assert services.export_run(job_id=str(job.id), org_id=str(org.id)) == "ready"
    state = job_state(job)
    parts = s3.head_object(Bucket=BUCKET, Key=state.file_name, PartNumber=1).get("PartsCount", 1)
    assert parts >= 2, (parts, state.size_bytes)
    body = s3.get_object(Bucket=BUCKET, Key=state.file_name)["Body"].read()
    members, manifest = read_zip(body)
    assert manifest["reading_count"] == 20_000
    assert csv_rows(members["readings.csv"])[1] == expected_readings(org, T0, T0 + dt.timedelta(days=2))
