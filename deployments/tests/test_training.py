from datetime import timedelta

import pytest
from django.utils import timezone

from apps_catalog.tests.factories import AppFactory, AppTargetFactory
from deployments import orchestrator
from deployments.models import TrainingRound
from deployments.tests.factories import TrainingRoundFactory
from devices.models import Device
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


@pytest.fixture
def app_device(register):
    """Register a device through the real service and link it to `app` (its target)."""

    def make(org, app, device_id, labels=None):
        target = app.targets.first() or AppTargetFactory(organization=org, app=app, platform="android")
        device, client = register(org, device_id, platform="android", labels=labels or {})
        with rls.bypass(reason="test setup"):
            Device.objects.filter(pk=device.pk).update(**orchestrator.app_device_fields(app=app, target=target))
            device.refresh_from_db()
        return device, client

    return make


def heartbeat(client, device):
    response = client.put(f"/api/v1/devices/{device.device_id}/heartbeat", {"status": "active"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_create_numbers_rounds_per_app_and_capability(client_a, org):
    app = AppFactory(organization=org)
    first = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision", "min_participants": 2},
                          format="json")
    assert first.status_code == 201, first.content
    assert first.json()["number"] == 1 and first.json()["status"] == "open" and first.json()["participants"] == 0
    second = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}, format="json").json()
    other = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "chat"}, format="json").json()
    assert second["number"] == 2 and other["number"] == 1
    assert client_a.get(f"/api/v1/training-rounds/{first.json()['id']}").json()["min_participants"] == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"app": "nope"}, "app"),
        ({"capability": "teleportation"}, "capability"),
        ({"target_selector": {"match_expressions": [{"key": "x", "operator": "Near"}]}},
         "target_selector.match_expressions.0.operator"),
        ({"min_participants": 0}, "min_participants"),
        ({"deadline": "2000-01-01T00:00:00Z"}, "deadline"),
        ({"number": 7}, "number"),
    ],
)
def test_create_bad_input_names_the_field(client_a, org, overrides, field):
    app = AppFactory(organization=org)
    response = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision", **overrides}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_pending_round_appears_in_heartbeat_and_sync_then_disappears(client_a, org, app_device):
    app = AppFactory(organization=org)
    device, device_client = app_device(org, app, "phone-1")
    outsider, outsider_client = app_device(org, AppFactory(organization=org), "phone-2")
    assert heartbeat(device_client, device)["pending_round_id"] is None

    created = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}, format="json").json()
    beat = heartbeat(device_client, device)
    assert beat["pending_round_id"] == created["id"]
    assert beat["message"] == "Training round 1 is awaiting your participation."
    sync = device_client.post(f"/api/v1/devices/{device.id}/sync", {}, format="json").json()
    assert sync["pending_round_id"] == created["id"] and sync["message"] == beat["message"]
    assert heartbeat(outsider_client, outsider)["pending_round_id"] is None  # another app's device

    url = f"/api/v1/training-rounds/{created['id']}/participations"
    submitted = device_client.post(url, {"num_samples": 120, "metrics": {"loss": 0.42}, "update": {"size_bytes": 2048}},
                                   format="json")
    assert submitted.status_code == 201, submitted.content
    assert submitted.json()["device"]["id"] == str(device.id) and submitted.json()["num_samples"] == 120
    beat = heartbeat(device_client, device)
    assert beat["pending_round_id"] is None and beat["message"] is None
    assert device_client.post(f"/api/v1/devices/{device.id}/sync", {}, format="json").json()["pending_round_id"] is None
    replay = device_client.post(url, {"num_samples": 150}, format="json")
    assert replay.status_code == 200 and replay.json()["num_samples"] == 150
    assert client_a.get(f"/api/v1/training-rounds/{created['id']}").json()["participants"] == 1


def test_selector_deadline_and_close(client_a, org, app_device):
    app = AppFactory(organization=org)
    berlin, berlin_client = app_device(org, app, "berlin-1", labels={"site": "berlin"})
    paris, paris_client = app_device(org, app, "paris-1", labels={"site": "paris"})
    selected = client_a.post("/api/v1/training-rounds", {
        "app": app.slug, "capability": "vision", "target_selector": {"match_labels": {"site": "berlin"}}}, format="json").json()
    assert heartbeat(berlin_client, berlin)["pending_round_id"] == selected["id"]
    assert heartbeat(paris_client, paris)["pending_round_id"] is None
    refused = paris_client.post(f"/api/v1/training-rounds/{selected['id']}/participations", {}, format="json")
    assert refused.status_code == 400 and "device_id" in refused.json()["fields"]

    closed = client_a.post(f"/api/v1/training-rounds/{selected['id']}/close", format="json")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert heartbeat(berlin_client, berlin)["pending_round_id"] is None
    late = berlin_client.post(f"/api/v1/training-rounds/{selected['id']}/participations", {}, format="json")
    assert late.status_code == 409
    assert client_a.post(f"/api/v1/training-rounds/{selected['id']}/close", format="json").status_code == 409

    expired = TrainingRoundFactory(organization=org, app=app, number=9, deadline=timezone.now() - timedelta(minutes=1))
    assert heartbeat(berlin_client, berlin)["pending_round_id"] is None
    assert expired.status == "open"


def test_api_key_reports_for_a_named_device_and_device_tokens_only_for_themselves(client_a, org, app_device):
    app = AppFactory(organization=org)
    device, device_client = app_device(org, app, "phone-1")
    other, _ = app_device(org, app, "phone-2")
    training_round = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}, format="json").json()
    url = f"/api/v1/training-rounds/{training_round['id']}/participations"
    assert client_a.post(url, {}, format="json").status_code == 400
    assert client_a.post(url, {"device_id": "phone-2"}, format="json").status_code == 201
    impostor = device_client.post(url, {"device_id": "phone-2"}, format="json")
    assert impostor.status_code == 400 and "device_id" in impostor.json()["fields"]
    # A device token cannot create or list rounds.
    assert device_client.get("/api/v1/training-rounds").status_code == 403
    assert device_client.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}, format="json").status_code == 403


def test_list_filters_and_constant_queries(client_a, org, django_assert_max_num_queries):
    app = AppFactory(organization=org)
    for n in range(1, 6):
        TrainingRoundFactory(organization=org, app=app, number=n)
    TrainingRoundFactory(organization=org, app=app, number=6, status="closed")
    with rls.bypass(reason="test"):
        assert TrainingRound.objects.filter(organization=org).count() == 6
    assert client_a.get("/api/v1/training-rounds", {"status": "closed"}).json()["total"] == 1
    assert client_a.get("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}).json()["total"] == 6
    assert client_a.get("/api/v1/training-rounds", {"status": "pending"}).status_code == 400
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/training-rounds", {"limit": 1})
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/training-rounds", {"limit": 1000})
