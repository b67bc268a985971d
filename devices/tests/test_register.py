import pytest

from devices.tests.conftest import device_client

pytestmark = pytest.mark.django_db


def register(client, **body):
    return client.post("/api/v1/devices/register", body, format="json")


def test_register_new_device_returns_token_once(client_a, org):
    response = register(
        client_a,
        device_id="laptop-001",
        platform="python",
        capabilities={"cpu": "4-core", "memory_gb": 8, "gpu": False},
        labels={"site": "berlin"},
        os_name="Windows",
        hardware={"manufacturer": "Dell Inc.", "cpu_cores": 8, "ram": 17179869184},
        extensions={"chrome": {"version": "1.11.0", "installed": True, "last_activity_at": "2026-02-24T21:23:53Z"}},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"id", "device_id", "api_key", "platform", "status", "created_at"}
    assert body["api_key"].startswith("dk_")
    assert body["status"] == "active"
    assert body["created_at"].endswith("Z")

    detail = client_a.get(f"/api/v1/devices/{body['id']}").json()
    assert detail["hardware"]["manufacturer"] == "Dell Inc."
    assert detail["hardware"]["model"] is None
    assert detail["extensions"]["chrome"]["installed"] is True
    assert detail["extensions"]["firefox"] == {
        "version": None, "installed": False, "auto_update": False, "last_activity_at": None
    }
    assert detail["connectivity_status"] == "never_seen"
    assert body["api_key"] not in str(detail)


def test_reregistration_rotates_token_and_keeps_id(client_a):
    first = register(client_a, device_id="cam-1", name="Camera").json()
    old = device_client(first["api_key"])
    assert old.put("/api/v1/devices/cam-1/heartbeat", {}, format="json").status_code == 200

    second = register(client_a, device_id="cam-1", name="Front camera", platform="edge")
    assert second.status_code == 200
    body = second.json()
    assert body["id"] == first["id"] and body["api_key"] != first["api_key"]
    assert body["platform"] == "edge"

    response = old.put("/api/v1/devices/cam-1/heartbeat", {}, format="json")
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or expired credentials."
    assert device_client(body["api_key"]).put("/api/v1/devices/cam-1/heartbeat", {}, format="json").status_code == 200
    detail = client_a.get("/api/v1/devices/cam-1").json()
    assert detail["name"] == "Front camera"
    verbs = list(client_a.get("/api/v1/devices/cam-1/activity?order=asc").json()["events"])
    assert [e["verb"] for e in verbs][:2] == ["device.registered", "device.came_online"]
    assert "device.re_registered" in [e["verb"] for e in verbs]


def test_revoked_device_cannot_reregister(client_a):
    register(client_a, device_id="gone")
    assert client_a.post("/api/v1/devices/gone/revoke").status_code == 200
    response = register(client_a, device_id="gone")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "device_id"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": "x" * 256}, "device_id"),
        ({"device_id": 12}, None),
        ({"device_id": "summary"}, "device_id"),
        ({"device_id": "a/b"}, "device_id"),
        ({"device_id": "d", "platform": "amiga"}, "platform"),
        ({"device_id": "d", "capabilities": "fast"}, "capabilities"),
        ({"device_id": "d", "capabilities": {"blob": "x" * 17000}}, "capabilities"),
        ({"device_id": "d", "labels": {"-bad-": "x"}}, "labels.-bad-"),
        ({"device_id": "d", "labels": {"ok": "not valid!"}}, "labels.ok"),
        ({"device_id": "d", "labels": {"Bad Prefix/x": "y"}}, "labels.Bad Prefix/x"),
        ({"device_id": "d", "labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"device_id": "d", "labels": ["a"]}, "labels"),
        ({"device_id": "d", "hardware": {"cpu_cores": "many"}}, "hardware.cpu_cores"),
        ({"device_id": "d", "installed_at": "yesterday"}, "installed_at"),
    ],
)
def test_register_rejects_bad_input(client_a, body, field):
    response = register(client_a, **body)
    assert response.status_code == 400, response.json()
    payload = response.json()
    assert payload["error"] == "bad_request"
    if field:
        assert field in payload["fields"], payload


def test_register_accepts_kubernetes_style_labels(client_a):
    labels = {"app.kubernetes.io/name": "camera", "tier": "", "zone_1": "eu-west.1"}
    response = register(client_a, device_id="k8s", labels=labels)
    assert response.status_code == 201, response.json()
    assert client_a.get("/api/v1/devices/k8s").json()["labels"] == labels


def test_register_needs_an_org_credential(device, dclient, make_client, org):
    assert register(dclient, device_id="other").status_code == 403
    assert register(make_client(org, role="viewer"), device_id="other").status_code == 403
