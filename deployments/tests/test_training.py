from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps_catalog.tests.factories import AppFactory, AppTargetFactory
from deployments import orchestrator, tasks, training
from deployments.models import TrainingRound
from deployments.tests.factories import (
    TrainingParticipationFactory,
    TrainingRoundFactory,
)
from devices.models import Device
from fleet.activity.models import ActivityEvent
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
    assert first.json()["number"] == 1 and first.json()["status"] == "open" and first.json()["participant_count"] == 0
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
    assert client_a.get(f"/api/v1/training-rounds/{created['id']}").json()["participant_count"] == 1


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
        training_round = TrainingRoundFactory(organization=org, app=app, number=n)
        for _ in range(n):
            TrainingParticipationFactory(organization=org, round=training_round)
    TrainingRoundFactory(organization=org, app=app, number=6, status="closed", outcome="completed")
    with rls.bypass(reason="test"):
        assert TrainingRound.objects.filter(organization=org).count() == 6
    listed = {r["number"]: r for r in client_a.get("/api/v1/training-rounds").json()["training_rounds"]}
    assert {n: r["participant_count"] for n, r in listed.items()} == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 0}
    assert listed[1]["outcome"] is None and listed[6]["outcome"] == "completed"
    assert client_a.get("/api/v1/training-rounds", {"status": "closed"}).json()["total"] == 1
    assert client_a.get("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}).json()["total"] == 6
    assert client_a.get("/api/v1/training-rounds", {"status": "pending"}).status_code == 400
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/training-rounds", {"limit": 1})
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/training-rounds", {"limit": 1000})


# --- closing: outcome, the expiry sweep ----------------------------------------------------------------------


def closed_events(organization):
    with rls.bypass(reason="test"):
        return {e.subject_id: e for e in ActivityEvent.objects.filter(organization=organization,
                                                                      verb="training_round.closed")}


def test_manual_close_records_the_outcome_by_min_participants(client_a, org, app_device):
    app = AppFactory(organization=org)
    _, device_client = app_device(org, app, "phone-1")
    rounds = {}
    for min_participants in (1, 2):
        created = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision",
                                                            "min_participants": min_participants}, format="json")
        assert created.json()["outcome"] is None
        rounds[min_participants] = created.json()["id"]
        participated = device_client.post(f"/api/v1/training-rounds/{rounds[min_participants]}/participations", {},
                                          format="json")
        assert participated.status_code == 201

    enough = client_a.post(f"/api/v1/training-rounds/{rounds[1]}/close", format="json").json()
    short = client_a.post(f"/api/v1/training-rounds/{rounds[2]}/close", format="json").json()
    assert (enough["outcome"], enough["participant_count"]) == ("completed", 1)
    assert (short["outcome"], short["participant_count"]) == ("insufficient_participants", 1)
    assert client_a.get(f"/api/v1/training-rounds/{rounds[2]}").json()["outcome"] == "insufficient_participants"
    events = closed_events(org)
    assert events[rounds[2]].data["participants"] == 1
    assert events[rounds[2]].data["outcome"] == "insufficient_participants"
    assert events[rounds[2]].actor_type == "api_key"


def test_sweep_closes_only_expired_open_rounds_across_organizations(org, other_org):
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(hours=1)
    completed = TrainingRoundFactory(organization=org, deadline=past, min_participants=2)
    TrainingParticipationFactory.create_batch(2, organization=org, round=completed)
    short = TrainingRoundFactory(organization=org, deadline=past, min_participants=2)
    TrainingParticipationFactory(organization=org, round=short)
    running = TrainingRoundFactory(organization=org, deadline=future)
    endless = TrainingRoundFactory(organization=org, deadline=None)
    closed_before = TrainingRoundFactory(organization=org, deadline=past - timedelta(days=1), status="closed",
                                         closed_at=past - timedelta(days=1), outcome="completed")
    elsewhere_expired = TrainingRoundFactory(organization=other_org, deadline=past)
    elsewhere_running = TrainingRoundFactory(organization=other_org, deadline=future)

    assert tasks.training_rounds_close_expired() == 3

    with rls.bypass(reason="test"):
        rounds = {r.id: r for r in TrainingRound.objects.all()}
    assert {r.id for r in rounds.values() if r.status == "closed"} == {
        completed.id, short.id, closed_before.id, elsewhere_expired.id}
    for open_round in (running, endless, elsewhere_running):
        assert rounds[open_round.id].outcome is None and rounds[open_round.id].closed_at is None
    assert rounds[completed.id].outcome == "completed"
    assert rounds[short.id].outcome == "insufficient_participants"
    assert rounds[elsewhere_expired.id].outcome == "insufficient_participants"
    assert rounds[completed.id].closed_at >= now
    assert rounds[closed_before.id].closed_at == closed_before.closed_at  # untouched

    events = closed_events(org)
    assert set(events) == {str(completed.id), str(short.id)}
    event = events[str(short.id)]
    assert (event.actor_type, event.actor_label, event.subject_type) == ("system", "system", "training_round")
    assert event.app_ref == short.app_id
    assert event.data == {"number": short.number, "capability": "vision", "participants": 1,
                          "outcome": "insufficient_participants", "reason": "deadline"}
    assert set(closed_events(other_org)) == {str(elsewhere_expired.id)}

    # Idempotent: nothing left to close, nothing rewritten, no new events.
    assert tasks.training_rounds_close_expired() == 0
    with rls.bypass(reason="test"):
        assert TrainingRound.objects.get(pk=completed.pk).closed_at == rounds[completed.id].closed_at
    assert len(closed_events(org)) == 2


def test_sweep_runs_a_fixed_number_of_queries(org, other_org):
    past = timezone.now() - timedelta(minutes=1)
    TrainingParticipationFactory(organization=org, round=TrainingRoundFactory(organization=org, deadline=past))
    with CaptureQueriesContext(connection) as one:
        assert training.training_rounds_close_expired() == 1
    for organization in (org, other_org):
        for training_round in TrainingRoundFactory.create_batch(4, organization=organization, deadline=past):
            TrainingParticipationFactory(organization=organization, round=training_round)
    with CaptureQueriesContext(connection) as many:
        assert training.training_rounds_close_expired() == 8
    assert len(many) == len(one)


def test_pending_round_disappears_after_the_sweep(client_a, org, app_device):
    app = AppFactory(organization=org)
    device, device_client = app_device(org, app, "phone-1")
    deadline = timezone.now() + timedelta(hours=1)
    created = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision",
                                                        "deadline": deadline.isoformat()}, format="json").json()
    assert heartbeat(device_client, device)["pending_round_id"] == created["id"]

    # Sweep as of after the deadline: the round is closed although, by the wall clock, it is not over yet.
    assert training.training_rounds_close_expired(now=deadline + timedelta(seconds=1)) == 1
    beat = heartbeat(device_client, device)
    assert beat["pending_round_id"] is None and beat["message"] is None
    assert device_client.post(f"/api/v1/devices/{device.id}/sync", {}, format="json").json()["pending_round_id"] is None
    swept = client_a.get(f"/api/v1/training-rounds/{created['id']}").json()
    assert (swept["status"], swept["outcome"], swept["participant_count"]) == ("closed", "insufficient_participants", 0)
    late = device_client.post(f"/api/v1/training-rounds/{created['id']}/participations", {}, format="json")
    assert late.status_code == 409


# --- participations list ---------------------------------------------------------------------------------------


def test_participations_list(client_a, client_b, make_client, org, app_device):
    app = AppFactory(organization=org)
    created = client_a.post("/api/v1/training-rounds", {"app": app.slug, "capability": "vision"}, format="json").json()
    url = f"/api/v1/training-rounds/{created['id']}/participations"
    devices = []
    for n in range(3):
        device, device_client = app_device(org, app, f"phone-{n}")
        body = {"num_samples": 10 * n, "metrics": {"loss": n / 10}, "update": {"size_bytes": n}}
        assert device_client.post(url, body, format="json").status_code == 201
        devices.append((device, device_client))

    listed = make_client(org, role="viewer").get(url)
    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert (body["total"], body["limit"], body["offset"]) == (3, 100, 0)
    first = body["participations"][0]
    assert first["device"]["id"] == str(devices[0][0].id) and first["device"]["device_id"] == "phone-0"
    assert (first["num_samples"], first["metrics"], first["update"]) == (0, {"loss": 0.0}, {"size_bytes": 0})
    assert first["round_id"] == created["id"] and first["submitted_at"].endswith("Z")
    assert [p["device"]["device_id"] for p in body["participations"]] == ["phone-0", "phone-1", "phone-2"]
    page = client_a.get(url, {"limit": 1, "offset": 2}).json()
    assert page["total"] == 3 and [p["device"]["device_id"] for p in page["participations"]] == ["phone-2"]

    missing = client_b.get(url)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert devices[0][1].get(url).status_code == 403  # device tokens report, they do not list
    assert client_a.get(url, {"limit": 0}).status_code == 400


def test_participations_list_runs_constant_queries(client_a, org, django_assert_max_num_queries):
    training_round = TrainingRoundFactory(organization=org)
    TrainingParticipationFactory.create_batch(5, organization=org, round=training_round)
    url = f"/api/v1/training-rounds/{training_round.id}/participations"
    with django_assert_max_num_queries(8):
        assert len(client_a.get(url, {"limit": 1}).json()["participations"]) == 1
    with django_assert_max_num_queries(8):
        assert len(client_a.get(url, {"limit": 1000}).json()["participations"]) == 5
