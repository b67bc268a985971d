import datetime as dt
import uuid

import pytest
from rest_framework.test import APIClient

from devices.tests.factories import DeviceFactory, registered_device
from fleet.tenancy import rls
from telemetry.models import QuarantinedReading, Reading

pytestmark = pytest.mark.django_db


def count(model, **filters):
    with rls.bypass(reason="test count"):
        return model.objects.filter(**filters).count()


def device_client(device):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {device.secret}")
    return client


def test_api_key_batch_mixes_valid_invalid_and_duplicate_rows_and_loses_nothing(client_a, org):
    device = DeviceFactory(organization=org, device_id="gw-1")
    other = DeviceFactory(organization=org)
    items = [
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T00:00:00Z", "value": 20.5},  # ok
        {"device_id": str(other.id), "metric": "temp", "ts": "2026-01-01T00:00:00Z", "value": 1},  # ok (by UUID)
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T00:00:00Z", "value": 99},  # duplicate in batch
        {"device_id": "gw-1", "metric": "temp", "ts": "yesterday", "value": 1},  # bad ts
        {"device_id": "nope", "metric": "temp", "ts": "2026-01-01T00:00:01Z", "value": 1},  # unknown device
        {"device_id": "gw-1", "metric": "", "ts": "2026-01-01T00:00:01Z", "value": 1},  # empty metric
        {"device_id": "gw-1", "metric": "x" * 65, "ts": "2026-01-01T00:00:01Z", "value": 1},  # metric too long
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T00:00:02Z", "value": "12"},  # not a number
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T00:00:03Z", "value": True},  # bool
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T00:00:04Z", "value": 10**400},  # not finite
        "not an object",
        {"metric": "temp", "ts": "2026-01-01T00:00:05Z", "value": 1},  # no device_id with an API key
        {"device_id": "gw-1", "metric": "temp", "ts": "2026-01-01T01:00:00+01:00", "value": 7},  # = 00:00Z: dup
    ]
    response = client_a.post("/api/v1/readings/batch", {"readings": items}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    assert body["duplicates"] == 2
    assert body["quarantined"] == 9
    assert body["accepted"] + body["duplicates"] + body["quarantined"] == len(items)
    assert [e["index"] for e in body["errors"]] == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert body["errors"][0]["reason"].startswith("ts:")
    assert "No such device" in body["errors"][1]["reason"]
    assert count(Reading, organization=org) == 2
    assert count(QuarantinedReading, organization=org) == 9
    # first write wins
    with rls.bypass(reason="test"):
        assert Reading.objects.get(device=device, metric="temp").value == 20.5
        quarantined = QuarantinedReading.objects.filter(organization=org)
        raw = {str(q.raw) for q in quarantined}
        unknown = quarantined.get(reason__contains="No such device")
    assert "not an object" in raw
    assert unknown.device_id is None

    again = client_a.post("/api/v1/readings/batch", {"readings": items[:2]}, format="json").json()
    assert again == {"accepted": 0, "duplicates": 2, "quarantined": 0, "errors": []}


def test_device_token_reports_only_its_own_readings(org):
    device = registered_device(org)
    other = DeviceFactory(organization=org)
    client = device_client(device)
    items = [
        {"metric": "cpu", "ts": "2026-01-01T00:00:00Z", "value": 0.5},
        {"device_id": device.device_id, "metric": "cpu", "ts": "2026-01-01T00:00:01Z", "value": 0.6},
        {"device_id": str(device.id), "metric": "cpu", "ts": "2026-01-01T00:00:02Z", "value": 0.7},
        {"device_id": other.device_id, "metric": "cpu", "ts": "2026-01-01T00:00:03Z", "value": 0.8},
    ]
    body = client.post("/api/v1/readings/batch", {"readings": items}, format="json").json()
    assert body["accepted"] == 3 and body["quarantined"] == 1
    assert body["errors"] == [{"index": 3, "reason": "device_id: a device may only report its own readings."}]
    assert count(Reading, device=other) == 0
    with rls.bypass(reason="test"):
        assert QuarantinedReading.objects.get(organization=org).device_id == device.id


def test_naive_timestamps_are_utc(client_a, org):
    DeviceFactory(organization=org, device_id="d")
    client_a.post(
        "/api/v1/readings/batch",
        {"readings": [{"device_id": "d", "metric": "m", "ts": "2026-01-01T10:00:00", "value": 1}]},
        format="json",
    )
    with rls.bypass(reason="test"):
        assert Reading.objects.get().ts == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)


def test_oversized_batch_is_413_in_the_error_format(client_a, org, settings):
    settings.READINGS_BATCH_MAX = 5
    items = [{"device_id": "x", "metric": "m", "ts": "2026-01-01T00:00:00Z", "value": 1}] * 6
    response = client_a.post("/api/v1/readings/batch", {"readings": items}, format="json")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert count(QuarantinedReading, organization=org) == 0


@pytest.mark.parametrize("body", [[], {"readings": {}}, {"readings": "x"}, {}])
def test_body_must_be_an_object_with_a_readings_list(client_a, body):
    response = client_a.post("/api/v1/readings/batch", body, format="json")
    assert response.status_code == 400
    assert "readings" in response.json()["fields"]


def test_viewer_cannot_ingest_and_another_organizations_device_is_unknown(make_client, org, other_org):
    foreign = DeviceFactory(organization=other_org, device_id="theirs")
    viewer = make_client(org, role="viewer")
    item = {"device_id": "theirs", "metric": "m", "ts": "2026-01-01T00:00:00Z", "value": 1}
    assert viewer.post("/api/v1/readings/batch", {"readings": [item]}, format="json").status_code == 403
    by_uuid = {**item, "device_id": str(foreign.id)}
    body = make_client(org).post("/api/v1/readings/batch", {"readings": [item, by_uuid]}, format="json").json()
    assert body["accepted"] == 0 and body["quarantined"] == 2
    assert count(Reading, device=foreign) == 0


@pytest.mark.postgres
def test_postgres_insert_is_one_statement_for_the_batch(client_a, org, django_assert_max_num_queries):
    DeviceFactory(organization=org, device_id="d")
    items = [
        {"device_id": "d", "metric": "m", "ts": (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)).isoformat(), "value": i}
        for i in range(2000)
    ]
    # auth (credential function + key) + device lookup + the unnest insert, plus savepoints
    with django_assert_max_num_queries(12) as captured:
        body = client_a.post("/api/v1/readings/batch", {"readings": items}, format="json").json()
    assert body["accepted"] == 2000
    inserts = [q["sql"] for q in captured.captured_queries if "telemetry_reading" in q["sql"]]
    assert len(inserts) == 1 and "unnest" in inserts[0]


def test_quarantine_list_release_and_delete(client_a, make_client, org):
    DeviceFactory(organization=org, device_id="d")
    items = [
        {"device_id": "d", "metric": "m", "ts": "bad", "value": 1},
        {"device_id": "d", "metric": "m", "ts": "2026-01-01T00:00:00Z", "value": "NaN"},
        {"device_id": "d", "metric": "", "ts": "2026-01-01T00:00:00Z", "value": 1},
    ]
    client_a.post("/api/v1/readings/batch", {"readings": items}, format="json")
    assert make_client(org, role="operator").get("/api/v1/admin/quarantine").status_code == 403
    listed = client_a.get("/api/v1/admin/quarantine").json()
    assert listed["total"] == 3
    by_reason = {q["raw"]["ts"] if q["raw"]["metric"] else "empty": q for q in listed["quarantined_readings"]}
    bad_ts = by_reason["bad"]["id"]
    assert by_reason["bad"]["device"]["device_id"] == "d"

    # as received it is still invalid: 400 with the reason, and it stays
    response = client_a.post(f"/api/v1/admin/quarantine/{bad_ts}/release", {}, format="json")
    assert response.status_code == 400
    assert "ts" in response.json()["fields"]
    # corrected: stored and gone from the quarantine
    fixed = {"device_id": "d", "metric": "m", "ts": "2026-01-01T00:00:00Z", "value": 3.5}
    response = client_a.post(f"/api/v1/admin/quarantine/{bad_ts}/release", {"reading": fixed}, format="json")
    assert response.status_code == 200 and response.json() == {"result": "accepted"}
    assert count(Reading, organization=org, value=3.5) == 1
    # the same reading again: a duplicate, still leaves the quarantine
    nan_id = next(q["id"] for q in listed["quarantined_readings"] if q["raw"].get("value") == "NaN")
    response = client_a.post(f"/api/v1/admin/quarantine/{nan_id}/release", {"reading": {**fixed, "value": 9}}, format="json")
    assert response.json() == {"result": "duplicate"}
    assert count(Reading, organization=org) == 1
    empty_id = by_reason["empty"]["id"]
    assert client_a.delete(f"/api/v1/admin/quarantine/{empty_id}").status_code == 204
    assert count(QuarantinedReading, organization=org) == 0
    assert client_a.delete(f"/api/v1/admin/quarantine/{uuid.uuid4()}").status_code == 404


def test_release_of_a_device_token_item_uses_its_device(client_a, org):
    device = registered_device(org)
    device_client(device).post(
        "/api/v1/readings/batch", {"readings": [{"metric": "m", "ts": "nope", "value": 1}]}, format="json"
    )
    item = client_a.get("/api/v1/admin/quarantine").json()["quarantined_readings"][0]
    fixed = {"metric": "m", "ts": "2026-01-01T00:00:00Z", "value": 1}
    assert client_a.post(f"/api/v1/admin/quarantine/{item['id']}/release", {"reading": fixed}, format="json").json() == {
        "result": "accepted"
    }
    assert count(Reading, device=device) == 1


def test_quarantine_list_query_count_does_not_grow(client_a, org, django_assert_max_num_queries):
    from telemetry.tests.factories import QuarantinedReadingFactory

    QuarantinedReadingFactory.create_batch(3, organization=org)
    with django_assert_max_num_queries(8) as small:
        client_a.get("/api/v1/admin/quarantine")
    QuarantinedReadingFactory.create_batch(30, organization=org)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client_a.get("/api/v1/admin/quarantine").json()["total"] == 33
