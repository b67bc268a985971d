from datetime import timedelta

import pytest
from django.utils import timezone

from devices.models import Connectivity, Device, DeviceStatus
from devices.tests.conftest import device_client
from devices.tests.factories import DeviceFactory, DeviceUserFactory, registered_device
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def fresh(device):
    with rls.bypass(reason="test"):
        return Device.objects.get(pk=device.pk)


def ids(response):
    assert response.status_code == 200, response.json()
    return {d["device_id"] for d in response.json()["devices"]}


# --- list --------------------------------------------------------------------------------------------
def test_list_shape_and_pagination(client_a, org, other_org):
    DeviceFactory.create_batch(3, organization=org)
    DeviceFactory(organization=other_org)
    body = client_a.get("/api/v1/devices?limit=2").json()
    assert set(body) == {"devices", "total", "limit", "offset"}
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0 and len(body["devices"]) == 2
    device = body["devices"][0]
    for key in ("id", "device_id", "name", "status", "platform", "connectivity_status", "labels", "capabilities",
                "os_name", "os_version", "last_seen_at", "last_heartbeat", "hardware", "extensions", "created_at"):
        assert key in device
    assert client_a.get("/api/v1/devices?limit=0").status_code == 400
    assert client_a.get("/api/v1/devices?limit=1001").status_code == 400


def test_list_filters(client_a, org):
    now = timezone.now()
    DeviceFactory(organization=org, device_id="cam-1", name="Front door", platform="edge",
                  labels={"site": "berlin", "tier": "edge"}, os_name="Linux", agent_version="1.0.0",
                  last_heartbeat=now - timedelta(hours=2), connectivity_status=Connectivity.OFFLINE)
    DeviceFactory(organization=org, device_id="cam-2", name="Back door", platform="edge",
                  labels={"site": "paris", "tier": "edge"}, os_name="linux", agent_version="1.1.0",
                  last_heartbeat=now, connectivity_status=Connectivity.ONLINE, serial_number="SN-77")
    DeviceFactory(organization=org, device_id="phone-1", name="Phone", platform="ios", status=DeviceStatus.INACTIVE)

    url = "/api/v1/devices"
    assert ids(client_a.get(url, {"platform": "edge"})) == {"cam-1", "cam-2"}
    assert ids(client_a.get(url, {"status": "inactive"})) == {"phone-1"}
    assert ids(client_a.get(url, {"connectivity_status": "online"})) == {"cam-2"}
    assert ids(client_a.get(url, {"label[tier]": "edge"})) == {"cam-1", "cam-2"}
    assert ids(client_a.get(url, {"label[tier]": "edge", "label[site]": "berlin"})) == {"cam-1"}
    assert ids(client_a.get(url, {"label[site]": "rome"})) == set()
    assert ids(client_a.get(url, {"q": "door"})) == {"cam-1", "cam-2"}
    assert ids(client_a.get(url, {"q": "sn-7"})) == {"cam-2"}
    assert ids(client_a.get(url, {"q": "PHONE"})) == {"phone-1"}
    assert ids(client_a.get(url, {"os_name": "LINUX"})) == {"cam-1", "cam-2"}
    assert ids(client_a.get(url, {"agent_version": "1.1.0"})) == {"cam-2"}
    since = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(client_a.get(url, {"seen_after": since})) == {"cam-2"}
    assert ids(client_a.get(url, {"seen_before": since})) == {"cam-1"}
    ordered = client_a.get(url, {"ordering": "-name"}).json()["devices"]
    assert [d["name"] for d in ordered] == ["Phone", "Front door", "Back door"]
    assert [d["device_id"] for d in client_a.get(url, {"ordering": "name"}).json()["devices"]][0] == "cam-2"
    assert client_a.get(url, {"ordering": "secret"}).status_code == 400
    assert client_a.get(url, {"platform": "amiga"}).status_code == 400
    assert client_a.get(url, {"seen_after": "yesterday"}).status_code == 400
    assert client_a.get(url, {"user_id": "not-a-uuid"}).status_code == 400


def test_list_org_id_must_be_the_callers(client_a, org, other_org):
    DeviceFactory(organization=org)
    assert client_a.get("/api/v1/devices", {"org_id": str(org.id)}).json()["total"] == 1
    assert client_a.get("/api/v1/devices", {"org_id": org.slug}).json()["total"] == 1
    for value in (str(other_org.id), other_org.slug, "org_demo"):
        response = client_a.get("/api/v1/devices", {"org_id": value})
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("count", [3, 30])
def test_list_query_count_does_not_grow(client_a, org, count, django_assert_max_num_queries):
    for device in DeviceFactory.create_batch(count, organization=org, labels={"site": "berlin"}):
        DeviceUserFactory(organization=org, device=device)
    with django_assert_max_num_queries(8):
        response = client_a.get("/api/v1/devices?limit=1000&label[site]=berlin&ordering=-created_at")
    assert response.json()["total"] == count


# --- detail, patch -------------------------------------------------------------------------------------
def test_retrieve_by_uuid_or_device_id(client_a, client_b, device):
    by_id = client_a.get(f"/api/v1/devices/{device.id}")
    by_name = client_a.get(f"/api/v1/devices/{device.device_id}")
    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json() == by_name.json()
    assert by_id.json()["labels"] == {"site": "berlin"}
    for ref in (device.id, device.device_id):
        response = client_b.get(f"/api/v1/devices/{ref}")
        assert response.status_code == 404
        assert client_b.patch(f"/api/v1/devices/{ref}", {"name": "x"}, format="json").status_code == 404
        assert client_b.post(f"/api/v1/devices/{ref}/revoke").status_code == 404
        assert client_b.put(f"/api/v1/devices/{ref}/heartbeat", {}, format="json").status_code == 404
        assert client_b.delete(f"/api/v1/devices/{ref}").status_code == 404
        assert client_b.get(f"/api/v1/devices/{ref}/activity").status_code == 404
    assert client_a.get("/api/v1/devices/nope").status_code == 404


def test_patch_name_labels_and_status(client_a, device):
    url = f"/api/v1/devices/{device.device_id}"
    response = client_a.patch(url, {"name": "Kitchen", "labels": {"tier": "edge", "site": None}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Kitchen"
    assert response.json()["labels"] == {"tier": "edge"}
    assert client_a.patch(url, {"status": "archived"}, format="json").json()["status"] == "archived"
    assert client_a.patch(url, {"status": "active"}, format="json").json()["status"] == "active"

    verbs = [e["verb"] for e in client_a.get(f"{url}/activity").json()["events"]]
    assert verbs[:4] == ["device.status_changed", "device.status_changed", "device.labels_changed", "device.renamed"]
    labels_event = client_a.get(f"{url}/activity", {"limit": 3}).json()["events"][2]
    assert labels_event["data"]["added"] == {"tier": "edge"} and labels_event["data"]["removed"] == ["site"]
    assert labels_event["actor"]["type"] == "api_key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"api_key": "dk_x"}, "api_key"),
        ({"device_id": "renamed"}, "device_id"),
        ({"connectivity_status": "online"}, "connectivity_status"),
        ({"status": "revoked"}, "status"),
        ({"status": "pending"}, "status"),
        ({"name": 5}, "name"),
        ({"labels": {"bad key": "x"}}, "labels.bad key"),
        ({"labels": "x"}, "labels"),
    ],
)
def test_patch_rejects_read_only_and_bad_fields(client_a, device, body, field):
    response = client_a.patch(f"/api/v1/devices/{device.device_id}", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_patch_label_limit_counts_the_merged_result(client_a, org):
    DeviceFactory(organization=org, device_id="full", labels={f"k{i}": "v" for i in range(64)})
    response = client_a.patch("/api/v1/devices/full", {"labels": {"extra": "v"}}, format="json")
    assert response.status_code == 400 and "labels" in response.json()["fields"]
    assert client_a.patch("/api/v1/devices/full", {"labels": {"k0": None, "extra": "v"}}, format="json").status_code == 200


def test_patch_needs_operator(make_client, org, device):
    viewer = make_client(org, role="viewer")
    assert viewer.get(f"/api/v1/devices/{device.device_id}").status_code == 200
    assert viewer.patch(f"/api/v1/devices/{device.device_id}", {"name": "x"}, format="json").status_code == 403


# --- revoke, delete -----------------------------------------------------------------------------------
def test_revoke_kills_tokens_and_is_idempotent(client_a, device, dclient):
    assert dclient.put(f"/api/v1/devices/{device.device_id}/heartbeat", {}, format="json").status_code == 200
    response = client_a.post(f"/api/v1/devices/{device.device_id}/revoke")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["connectivity_status"] == "offline"
    assert dclient.put(f"/api/v1/devices/{device.device_id}/heartbeat", {}, format="json").status_code == 401
    assert client_a.post(f"/api/v1/devices/{device.device_id}/revoke").status_code == 200
    verbs = [e["verb"] for e in client_a.get(f"/api/v1/devices/{device.device_id}/activity").json()["events"]]
    assert verbs.count("device.revoked") == 1
    response = client_a.patch(f"/api/v1/devices/{device.device_id}", {"status": "active"}, format="json")
    assert response.status_code == 409


def test_revoke_never_seen_device(client_a, device):
    assert client_a.post(f"/api/v1/devices/{device.id}/revoke").json()["connectivity_status"] == "never_seen"


def test_delete_only_revoked_or_archived_and_admin_only(client_a, make_client, org, device):
    url = f"/api/v1/devices/{device.device_id}"
    assert client_a.delete(url).status_code == 409
    client_a.patch(url, {"status": "archived"}, format="json")
    assert make_client(org, role="operator").delete(url).status_code == 403
    assert client_a.delete(url).status_code == 204
    assert client_a.get(url).status_code == 404
    history = client_a.get("/api/v1/activity", {"subject_id": str(device.id)}).json()
    assert "device.deleted" in [e["verb"] for e in history[next(k for k in history if isinstance(history[k], list))]]


# --- activity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 20])
def test_activity_feed_order_and_query_count(client_a, org, count, django_assert_max_num_queries):
    device = registered_device(org)
    for i in range(count):
        client_a.patch(f"/api/v1/devices/{device.device_id}", {"name": f"n{i}"}, format="json")
    with django_assert_max_num_queries(8):
        newest = client_a.get(f"/api/v1/devices/{device.device_id}/activity").json()
    assert newest["total"] == count + 1
    assert newest["events"][-1]["verb"] == "device.registered"
    oldest = client_a.get(f"/api/v1/devices/{device.device_id}/activity", {"order": "asc"}).json()
    assert oldest["events"][0]["verb"] == "device.registered"
    assert client_a.get(f"/api/v1/devices/{device.device_id}/activity", {"order": "up"}).status_code == 400


# --- users ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 20])
def test_user_lists_query_count(client_a, org, count, django_assert_max_num_queries):
    device = DeviceFactory(organization=org)
    for _ in range(count):
        DeviceUserFactory(organization=org, device=device)
    with django_assert_max_num_queries(8):
        assert client_a.get(f"/api/v1/devices/{device.device_id}/users").json()["total"] == count
    with django_assert_max_num_queries(8):
        assert client_a.get("/api/v1/users").json()["total"] == count


def test_users_are_isolated(client_a, client_b, org):
    link = DeviceUserFactory(organization=org)
    assert client_a.get(f"/api/v1/users/{link.user.id}").status_code == 200
    assert client_b.get(f"/api/v1/users/{link.user.id}").status_code == 404
    assert client_b.get("/api/v1/users").json()["total"] == 0
    assert client_b.get(f"/api/v1/devices/{link.device.id}/users").status_code == 404


# --- summary -----------------------------------------------------------------------------------------
def test_summary(client_a, org, other_org, django_assert_max_num_queries):
    DeviceFactory(organization=org, platform="ios", os_name="iOS", agent_version="2.0")
    DeviceFactory(organization=org, platform="ios", os_name="iOS", agent_version="2.0",
                  connectivity_status=Connectivity.ONLINE)
    DeviceFactory(organization=org, platform="windows", os_name="Windows", status=DeviceStatus.ARCHIVED)
    DeviceFactory(organization=other_org, platform="linux")
    with django_assert_max_num_queries(8):  # savepoint, auth (2-3), two aggregates, enrollment errors, release
        body = client_a.get("/api/v1/devices/summary").json()
    assert body["total"] == 3
    assert body["by_status"]["active"] == 2 and body["by_status"]["archived"] == 1 and body["by_status"]["revoked"] == 0
    assert body["by_platform"]["ios"] == 2 and body["by_platform"]["linux"] == 0
    assert body["by_connectivity"] == {"online": 1, "stale": 0, "offline": 0, "never_seen": 2}
    assert body["by_os_name"][0] == {"os_name": "iOS", "count": 2}
    assert body["agent_versions"][0] == {"agent_version": "2.0", "count": 2}
    assert body["enrollment_errors"] == 0


def test_device_principal_is_the_actor(device, dclient, client_a):
    dclient.put(f"/api/v1/devices/{device.device_id}/heartbeat", {}, format="json")
    event = client_a.get(f"/api/v1/devices/{device.device_id}/activity").json()["events"][0]
    assert event["verb"] == "device.came_online"
    assert event["actor"] == {"type": "device", "id": str(device.id), "label": device.device_id}
    assert device_client("dk_garbage").get(f"/api/v1/devices/{device.device_id}/health").status_code == 401
    assert fresh(device).connectivity_status == Connectivity.ONLINE
