from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps_catalog.models import InferenceRequestLog, ModelCapability
from apps_catalog.tests.factories import AppFactory, AppKeyFactory
from deployments import routing, services
from deployments.models import DeploymentStatus, RoutingEvent
from deployments.tests.factories import (
    DeploymentFactory,
    RoutingEventFactory,
    public_variant,
)
from devices.models import Device
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def iso(dt):
    return dt.isoformat().replace("+00:00", "Z")


def event(app_, **overrides):
    return {"app": app_.slug, "capability": "vision", "route": "local", "latency_ms": 12.5, "success": True,
            "ts": iso(timezone.now() - timedelta(minutes=1)), **overrides}


def publishable_client(org, app):
    key = AppKeyFactory(organization=org, app=app)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.secret}")
    return client


# --- ingest -----------------------------------------------------------------------------------------------------


def test_device_token_reports_for_itself_only(org, register):
    app = AppFactory(organization=org)
    device, device_client = register(org, "phone-1", platform="android", labels={"app": app.slug})
    variant = public_variant("vision")
    response = device_client.post("/api/v1/routing/events", [
        event(app, variant_id=str(variant.id)),
        event(app, device_id="phone-1", route="cloud", latency_ms=None),
        event(app, device_id="someone-else"),
    ], format="json")
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2, "rejected": 1, "errors": [
        {"index": 2, "fields": {"device_id": ["A device can only report for itself."]}}]}
    with rls.bypass(reason="test"):
        stored = list(RoutingEvent.objects.filter(organization=org).order_by("route"))
    assert [(e.route, e.device_id, e.device_identifier) for e in stored] == [
        ("cloud", device.id, "phone-1"), ("local", device.id, "phone-1")]
    assert stored[1].variant_id == variant.id


def test_a_device_linked_to_an_app_reports_for_that_app_only(org, register):
    app, other = AppFactory(organization=org), AppFactory(organization=org)
    device, device_client = register(org, "phone-1", platform="android")
    with rls.bypass(reason="test setup"):
        Device.objects.filter(pk=device.pk).update(app=app)
    body = device_client.post("/api/v1/routing/events", [event(app), event(other)], format="json").json()
    assert body["accepted"] == 1 and body["errors"][0]["index"] == 1 and "app" in body["errors"][0]["fields"]


def test_publishable_key_reports_for_its_own_app_only(org):
    app, other = AppFactory(organization=org), AppFactory(organization=org)
    client = publishable_client(org, app)
    response = client.post("/api/v1/routing/events", {"events": [event(app, device_id="sdk-install-1"), event(other)]},
                           format="json")
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1 and response.json()["errors"][0]["index"] == 1
    assert "app" in response.json()["errors"][0]["fields"]
    # A publishable key can report, nothing else.
    assert client.get("/api/v1/routing/decisions").status_code == 403
    assert client.get("/api/v1/routing/stats").status_code == 403


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"app": "nope"}, "app"),
        ({"capability": "teleportation"}, "capability"),
        ({"route": "edge"}, "route"),
        ({"variant_id": "00000000-0000-0000-0000-000000000000"}, "variant_id"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"success": "yes"}, "success"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": iso(timezone.now() + timedelta(hours=2))}, "ts"),
        ({"reason": "x" * 201}, "reason"),
    ],
)
def test_bad_items_are_rejected_by_index_and_the_rest_stored(client_a, org, overrides, field):
    app = AppFactory(organization=org)
    response = client_a.post("/api/v1/routing/events", [event(app), event(app, **overrides)], format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert body["errors"][0]["index"] == 1 and field in body["errors"][0]["fields"]


def test_variant_of_another_capability_is_rejected(client_a, org):
    app = AppFactory(organization=org)
    chat = public_variant("chat")
    body = client_a.post("/api/v1/routing/events", [event(app, variant_id=str(chat.id))], format="json").json()
    assert body["rejected"] == 1 and "variant_id" in body["errors"][0]["fields"]


def test_batches_are_limited_to_1000(client_a, org):
    app = AppFactory(organization=org)
    too_many = client_a.post("/api/v1/routing/events", [event(app)] * 1001, format="json")
    assert too_many.status_code == 400 and "events" in too_many.json()["fields"]
    empty = client_a.post("/api/v1/routing/events", {"events": []}, format="json")
    assert empty.status_code == 400 and "events" in empty.json()["fields"]
    full = client_a.post("/api/v1/routing/events", [event(app)] * 1000, format="json")
    assert full.status_code == 202 and full.json()["accepted"] == 1000


def test_ingest_is_a_bulk_insert(client_a, org):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    app = AppFactory(organization=org)
    client_a.post("/api/v1/routing/events", [event(app)], format="json")  # first request logged
    with CaptureQueriesContext(connection) as small_queries:
        small = client_a.post("/api/v1/routing/events", [event(app, device_id=f"d{i}") for i in range(2)], format="json")
    with CaptureQueriesContext(connection) as large_queries:
        large = client_a.post("/api/v1/routing/events", [event(app, device_id=f"d{i}") for i in range(500)], format="json")
    assert small.json()["accepted"] == 2 and large.json()["accepted"] == 500
    # One INSERT per batch on PostgreSQL; SQLite splits it by its 999-parameter limit (~7 statements).
    extra = 0 if connection.vendor == "postgresql" else 8
    assert len(small_queries) <= 12 and len(large_queries) <= len(small_queries) + extra


def test_first_request_answers_from_routing_events(client_a, org):
    app = AppFactory(organization=org)
    assert client_a.get(f"/api/v1/apps/{app.slug}/first-request").json()["received"] is False
    earliest = timezone.now() - timedelta(minutes=30)
    client_a.post("/api/v1/routing/events", [event(app, route="local"), event(app, route="cloud", ts=iso(earliest))],
                  format="json")
    first = client_a.get(f"/api/v1/apps/{app.slug}/first-request").json()
    assert first["received"] is True and first["via"] == "cloud"
    assert first["first_at"].startswith(iso(earliest)[:19])
    client_a.post("/api/v1/routing/events", [event(app)], format="json")
    with rls.bypass(reason="test"):
        assert InferenceRequestLog.objects.filter(app=app).count() == 1  # one source of truth, not a row per event
    events = client_a.get("/api/v1/activity", {"verb": "app.first_request"}).json()["events"]
    assert len(events) == 1


# --- decisions ----------------------------------------------------------------------------------------------------


def test_decisions_recent_first_with_filters(client_a, org, django_assert_max_num_queries):
    app, other = AppFactory(organization=org), AppFactory(organization=org)
    now = timezone.now()
    chat = ModelCapability.objects.get(key="chat")
    old = RoutingEventFactory(organization=org, app=app, ts=now - timedelta(hours=3), device_identifier="a")
    failed = RoutingEventFactory(organization=org, app=app, ts=now - timedelta(hours=2), success=False, route="cloud",
                                 device_identifier="b")
    recent = RoutingEventFactory(organization=org, app=app, ts=now - timedelta(hours=1), capability=chat, device_identifier="a")
    elsewhere = RoutingEventFactory(organization=org, app=other, ts=now)

    def ids(url, **params):
        response = client_a.get(url, params)
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["decisions"]]

    assert ids("/api/v1/routing/decisions") == [str(e.id) for e in (elsewhere, recent, failed, old)]
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions") == [str(e.id) for e in (recent, failed, old)]
    assert ids("/api/v1/routing/decisions", app=other.slug) == [str(elsewhere.id)]
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions", capability="chat") == [str(recent.id)]
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions", route="cloud") == [str(failed.id)]
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions", success="false") == [str(failed.id)]
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions", device="a") == [str(recent.id), str(old.id)]
    window = {"since": iso(now - timedelta(hours=2, minutes=30)), "until": iso(now - timedelta(minutes=30))}
    assert ids(f"/api/v1/apps/{app.slug}/routing/decisions", **window) == [str(recent.id), str(failed.id)]
    assert client_a.get("/api/v1/routing/decisions", {"route": "edge"}).status_code == 400
    for _ in range(5):
        RoutingEventFactory(organization=org, app=app)
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/routing/decisions", {"limit": 1})
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/routing/decisions", {"limit": 1000})
    with django_assert_max_num_queries(9):
        client_a.get(f"/api/v1/apps/{app.slug}/routing/decisions", {"limit": 1000})


# --- stats ----------------------------------------------------------------------------------------------------------


def test_stats_percentiles_against_hand_computed_values(client_a, org):
    app, other = AppFactory(organization=org), AppFactory(organization=org)
    now = timezone.now()
    variant = public_variant("vision")
    recent = now - timedelta(minutes=10)
    for latency in (10, 20, 30, 40, 100):
        RoutingEventFactory(organization=org, app=app, route="local", latency_ms=latency, ts=recent, variant=variant)
    RoutingEventFactory(organization=org, app=app, route="local", latency_ms=None, ts=recent, success=False, variant=variant)
    for latency in (200, 300):
        RoutingEventFactory(organization=org, app=app, route="cloud", latency_ms=latency, ts=recent)
    RoutingEventFactory(organization=org, app=app, route="cloud", latency_ms=5000, ts=now - timedelta(days=2))
    RoutingEventFactory(organization=org, app=other, route="cloud", latency_ms=1, ts=recent)

    body = client_a.get(f"/api/v1/apps/{app.slug}/routing/stats", {"window": "24h"}).json()
    assert (body["total"], body["local"], body["cloud"], body["errors"]) == (8, 6, 2, 1)
    assert body["local_share"] == 0.75 and body["error_rate"] == 0.125
    by_route = {r["route"]: r for r in body["by_route"]}
    # percentile_cont: position (n-1)·p, linear interpolation. local latencies 10,20,30,40,100 (NULL ignored)
    assert by_route["local"]["p50_latency_ms"] == 30.0
    assert by_route["local"]["p95_latency_ms"] == 88.0  # 40 + 0.8 x (100 - 40)
    assert by_route["local"]["error_rate"] == round(1 / 6, 4)
    assert by_route["cloud"]["p50_latency_ms"] == 250.0 and by_route["cloud"]["p95_latency_ms"] == 295.0
    by_variant = {v["variant_id"]: v for v in body["by_variant"]}
    assert by_variant[str(variant.id)]["count"] == 6 and by_variant[None]["count"] == 2

    week = client_a.get(f"/api/v1/apps/{app.slug}/routing/stats", {"window": "7d"}).json()
    assert week["total"] == 9 and {r["route"]: r for r in week["by_route"]}["cloud"]["p50_latency_ms"] == 300.0
    org_wide = client_a.get("/api/v1/routing/stats", {"window": "1h"}).json()
    assert org_wide["total"] == 9
    assert client_a.get("/api/v1/routing/stats", {"app": other.slug}).json()["total"] == 1
    bad = client_a.get("/api/v1/routing/stats", {"window": "1y"})
    assert bad.status_code == 400 and "window" in bad.json()["fields"]


def test_python_percentile_matches_percentile_cont():
    assert routing.percentile([10, 20, 30, 40, 100], 0.95) == pytest.approx(88.0)
    assert routing.percentile([7], 0.5) == 7 and routing.percentile([], 0.5) is None


# --- health gate --------------------------------------------------------------------------------------------------------


def test_health_gate_rolls_back_on_routing_error_rate(org, org_context):
    org_context(org)
    app = AppFactory(organization=org)
    variant = public_variant("vision")
    started = timezone.now() - timedelta(minutes=5)
    deployment = DeploymentFactory(
        organization=org, app=app, variant=variant, status=DeploymentStatus.ROLLING_OUT, stage_started_at=started,
        strategy={"type": "staged", "stages": [10, 100], "health_gates": {"max_routing_error_rate": 0.2, "min_routing_events": 5}},
    )
    for i in range(5):
        RoutingEventFactory(organization=org, app=app, variant=variant, success=i > 0, ts=timezone.now())
    assert services.deployment_evaluate(deployment=deployment) is None  # 1/5 = 20%: not above the gate
    RoutingEventFactory(organization=org, app=app, variant=variant, success=False, ts=timezone.now())
    assert services.deployment_evaluate(deployment=deployment) == "rolled_back"  # 2/6
    deployment.refresh_from_db()
    assert deployment.status == "rolled_back" and "routing error rate" in deployment.status_reason.lower()
