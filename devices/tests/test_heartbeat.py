from datetime import timedelta

import pytest
from django.utils import timezone

from devices import registry, services
from devices.models import Connectivity, Device, DeviceToken, EndUser
from devices.tests.conftest import device_client
from devices.tests.factories import registered_device
from fleet.activity.models import ActivityEvent
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db

METRICS = {"cpu_usage_percent": 42.5, "memory_usage_percent": 61.0, "battery_level": 85, "fan_rpm": 1200}


def beat(client, device_ref, body=None):
    return client.put(f"/api/v1/devices/{device_ref}/heartbeat", body or {}, format="json")


def steady(client, device_ref):
    """Two heartbeats: the device is then online and its attention flag cleared, so its next
    heartbeat is a steady one (the steady path on PostgreSQL)."""
    for _ in range(2):
        assert beat(client, device_ref, {"status": "active"}).status_code == 200


def is_steady(captured):
    """The statements of one heartbeat were the steady path's: the credential function and one UPDATE."""
    return len(captured) == 2 and captured.sql[1].lstrip().startswith("WITH token AS")


def events(verb):
    with rls.bypass(reason="test"):
        return list(ActivityEvent.objects.filter(verb=verb))


def fresh(device):
    with rls.bypass(reason="test"):
        return Device.objects.get(pk=device.pk)


def test_heartbeat_with_device_token(device, dclient):
    response = beat(dclient, device.device_id, {"status": "active", "metrics": METRICS, "agent_version": "1.2.3"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "active"
    assert body["connectivity_status"] == "online"
    assert body["next_heartbeat_in_s"] == 60
    assert body["directives"] == [] and body["pending_round_id"] is None and body["message"] is None
    assert body["last_heartbeat"].endswith("Z")
    row = fresh(device)
    assert row.last_metrics == METRICS and row.agent_version == "1.2.3"
    assert row.connectivity_status == Connectivity.ONLINE
    # by UUID too
    assert beat(dclient, str(device.id)).status_code == 200


def test_heartbeat_replay_is_idempotent_and_records_transitions_only(device, dclient):
    body = {"status": "active", "metrics": METRICS}
    for _ in range(3):
        assert beat(dclient, device.device_id, body).status_code == 200
    first = fresh(device)
    assert beat(dclient, device.device_id, body).status_code == 200
    second = fresh(device)
    assert second.last_metrics == first.last_metrics
    assert second.updated_at == first.updated_at
    assert second.last_heartbeat >= first.last_heartbeat
    assert len(events("device.came_online")) == 1
    assert events("device.status_changed") == []

    assert beat(dclient, device.device_id, {"status": "inactive"}).status_code == 200
    changed = events("device.status_changed")
    assert len(changed) == 1 and changed[0].data["to"] == "inactive"
    assert changed[0].actor_type == "device" and changed[0].actor_label == device.device_id
    assert fresh(device).last_metrics == {}  # the latest payload is the current state


def test_device_token_cannot_touch_another_device(org, other_org, device, dclient):
    other = registered_device(org)
    foreign = registered_device(other_org)
    steady(dclient, device.device_id)  # the steady path checks the device too
    steady(device_client(other), other.device_id)
    for ref in (other.device_id, str(other.id), foreign.device_id, str(foreign.id), "nope"):
        response = beat(dclient, ref, {"status": "inactive"})
        assert response.status_code == 404, ref
        assert dclient.get(f"/api/v1/devices/{ref}/health").status_code == 404
        assert dclient.post(f"/api/v1/devices/{ref}/frames", b"x", content_type="image/jpeg").status_code == 404
    assert fresh(other).status == "active"
    assert fresh(other).last_metrics == {} and fresh(device).status == "active"


def test_device_token_is_limited_to_device_endpoints(device, dclient):
    assert dclient.get("/api/v1/devices").status_code == 403
    assert dclient.get(f"/api/v1/devices/{device.device_id}").status_code == 403
    assert dclient.post(f"/api/v1/devices/{device.device_id}/revoke").status_code == 403
    assert dclient.get("/api/v1/api-keys").status_code == 403
    assert dclient.get(f"/api/v1/devices/{device.device_id}/health").status_code == 200


def test_broken_unknown_and_revoked_tokens_get_the_same_401(device, dclient, client_a, statements):
    broken = device.secret[:-1] + ("A" if device.secret[-1] != "A" else "B")
    with statements() as captured:
        response = beat(device_client(broken), device.device_id)
    assert response.status_code == 401
    assert len(captured) == 0  # checksum rejected before any query
    unknown = registered_device(device.organization).secret
    steady(dclient, device.device_id)  # a token revoked while its device is steady
    with rls.bypass(reason="test"):
        DeviceToken.objects.all().update(revoked_at=timezone.now())
    for secret in (unknown, device.secret):
        response = beat(device_client(secret), device.device_id)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "message": "Invalid or expired credentials.", "fields": {}}


def test_heartbeat_with_api_key(device, client_a, make_client, org):
    assert beat(client_a, device.device_id, {"status": "active"}).status_code == 200
    assert beat(make_client(org, role="viewer"), device.device_id).status_code == 403


def test_heartbeat_on_revoked_device_conflicts(device, client_a):
    client_a.post(f"/api/v1/devices/{device.device_id}/revoke")
    assert beat(client_a, device.device_id).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "revoked"}, "status"),
        ({"status": 3}, "status"),
        ({"metrics": []}, "metrics"),
        ({"metrics": {"cpu_usage_percent": 101}}, "metrics.cpu_usage_percent"),
        ({"metrics": {"battery_level": -1}}, "metrics.battery_level"),
        ({"metrics": {"memory_usage_percent": "high"}}, "metrics.memory_usage_percent"),
        ({"metrics": {"storage_free_bytes": -5}}, "metrics.storage_free_bytes"),
        ({"metrics": {"storage_free_bytes": 1.5}}, "metrics.storage_free_bytes"),
        ({"metrics": {"temperature_c": True}}, "metrics.temperature_c"),
        ({"metrics": {"custom": "x"}}, "metrics.custom"),
        ({"metrics": {"bad key!": 1}}, "metrics.bad key!"),
        ({"metrics": {f"m{i}": i for i in range(33)}}, "metrics"),
        ({"users": [{"username": "x"}]}, "users.0.user_key"),
        ({"users": [{"user_key": f"u{i}"} for i in range(51)]}, "users"),
        ({"agent_version": ["1"]}, "agent_version"),
    ],
)
def test_heartbeat_rejects_bad_input(device, dclient, body, field):
    response = beat(dclient, device.device_id, body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert fresh(device).last_heartbeat is None
    steady(dclient, device.device_id)  # the steady path must refuse it as well
    before = fresh(device).last_heartbeat
    response = beat(dclient, device.device_id, body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert fresh(device).last_heartbeat == before


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b'{"status": "active", "metrics": {"temperature_c": NaN}}', "application/json", 400),
        (b'{"status": "active"', "application/json", 400),
        (b'["active"]', "application/json", 400),
        (b'{"status": null}', "application/json", 400),
        (b'{"agent_version": ""}', "application/json", 400),
        ('{"status": "active"}'.encode("utf-16"), "application/json", 400),
        (b'{"status": "active"}', "text/plain", 415),
    ],
)
def test_steady_heartbeat_leaves_malformed_bodies_to_the_full_path(device, dclient, raw, content_type, status):
    steady(dclient, device.device_id)
    before = fresh(device).last_heartbeat
    response = dclient.generic("PUT", f"/api/v1/devices/{device.device_id}/heartbeat", raw, content_type=content_type)
    assert response.status_code == status, response.content
    assert set(response.json()) == {"error", "message", "fields"}
    assert fresh(device).last_heartbeat == before


def test_heartbeat_query_count(device, dclient, statements):
    """Authentication included. A steady heartbeat (PostgreSQL): the credential function and one
    UPDATE. The full path: credential function + token/device select + one UPDATE.

    Providers registered by other apps (deployments' directives, training rounds) are all installed;
    they run only for a device flagged with `attention`, so an ordinary heartbeat adds nothing."""
    from django.db import connection

    assert beat(dclient, device.device_id, {"status": "active", "metrics": METRICS}).status_code == 200
    for due in (False, True):  # steady state, and again when the token's last-used time is due
        if due:
            with rls.bypass(reason="test"):
                DeviceToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
        with statements() as captured:
            response = beat(dclient, device.device_id, {"status": "active", "metrics": METRICS})
        assert response.status_code == 200
        # The request's own transaction (ATOMIC_REQUESTS) is a SAVEPOINT inside the test's transaction
        # (BEGIN/COMMIT in production); the services add no savepoint of their own.
        assert len(captured.transaction_control) == 2, captured.transaction_control
        if connection.vendor == "postgresql":
            assert is_steady(captured), captured.sql
        else:
            assert len(captured) <= 3, captured.sql
    with rls.bypass(reason="test"):
        token = DeviceToken.objects.get(device=device, revoked_at__isnull=True)
    assert token.last_used_at > timezone.now() - timedelta(minutes=1)
    # A transition (the status changes): the steady attempt writes nothing, then the full path's three
    # statements and the transition's activity event.
    with statements() as captured:
        assert beat(dclient, device.device_id, {"status": "inactive"}).status_code == 200
    if connection.vendor == "postgresql":
        assert len(captured) == 2 + 3 + 1, captured.sql
    else:
        assert len(captured) <= 3 + 1, captured.sql


def test_steady_and_full_heartbeats_answer_alike(device, dclient, statements):
    """The same heartbeat through the steady path and through the full one (any query string takes
    the full path): same body, same headers, same row."""
    from django.db import connection

    steady(dclient, device.device_id)
    body = {"status": "active", "metrics": METRICS, "agent_version": "1.2.3"}
    assert beat(dclient, device.device_id, body).status_code == 200  # the agent version is a change: full path
    answers, rows = [], []
    for path in (f"/api/v1/devices/{device.device_id}/heartbeat", f"/api/v1/devices/{device.device_id}/heartbeat?full"):
        with statements() as captured:
            response = dclient.put(path, body, format="json")
        assert response.status_code == 200
        assert is_steady(captured) == (connection.vendor == "postgresql" and "?" not in path)
        answers.append(response)
        row = fresh(device)
        rows.append(row)
    steady_answer, full_answer = answers
    assert {**steady_answer.json(), "last_heartbeat": None} == {**full_answer.json(), "last_heartbeat": None}
    assert steady_answer.json()["last_heartbeat"].endswith("Z")
    for header in ("Content-Type", "Allow", "Vary"):
        assert steady_answer.get(header) == full_answer.get(header), header
    for row in rows:
        assert row.last_metrics == METRICS and row.agent_version == "1.2.3" and row.status == "active"
        assert row.stale_at - row.last_heartbeat == timedelta(seconds=2 * row.heartbeat_interval_s)
        assert row.offline_at - row.last_heartbeat == timedelta(seconds=10 * row.heartbeat_interval_s)
    assert rows[0].updated_at == rows[1].updated_at


def test_transitions_take_the_full_path(device, dclient):
    """What the steady path must not swallow: coming back online, a status change, a new agent version."""
    steady(dclient, device.device_id)
    with rls.bypass(reason="test"):
        Device.objects.filter(pk=device.pk).update(connectivity_status=Connectivity.OFFLINE)
    assert beat(dclient, device.device_id, {"status": "active"}).json()["connectivity_status"] == "online"
    assert sorted(e.data["from"] for e in events("device.came_online")) == ["never_seen", "offline"]

    assert beat(dclient, device.device_id, {"status": "inactive"}).json()["status"] == "inactive"
    assert len(events("device.status_changed")) == 1
    updated = fresh(device).updated_at
    assert beat(dclient, device.device_id, {"agent_version": "2.0.0"}).status_code == 200
    row = fresh(device)
    assert row.agent_version == "2.0.0" and row.updated_at > updated and row.status == "inactive"


@pytest.mark.usefixtures("rate_window")
def test_both_paths_count_against_one_limit_once(device, dclient, settings):
    """A device's limit counts its token's requests whichever path answers them, and a request the
    steady path counted and then handed to the full path is counted once."""
    from django.core.cache import cache

    cache.clear()
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "device": "4/60"}
    steady(dclient, device.device_id)  # 2: the full path, then the steady one
    with rls.bypass(reason="test"):  # 3: the steady path counts it, finds a transition, hands it over
        Device.objects.filter(pk=device.pk).update(connectivity_status=Connectivity.OFFLINE)
    assert beat(dclient, device.device_id).status_code == 200
    assert beat(dclient, device.device_id).status_code == 200  # 4
    response = beat(dclient, device.device_id)
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    cache.clear()


def test_heartbeat_users(org, device, dclient, client_a):
    users = [
        {"user_key": "mikechang", "username": "mikechang", "last_activity_at": "2026-02-24T21:23:53Z"},
        {"user_key": "alice", "username": "alice"},
    ]
    assert beat(dclient, device.device_id, {"users": users}).status_code == 200
    assert beat(dclient, device.device_id, {"users": users[:1]}).status_code == 200
    with rls.bypass(reason="test"):
        assert EndUser.objects.filter(organization=org).count() == 2
    listed = client_a.get(f"/api/v1/devices/{device.device_id}/users").json()
    assert listed["total"] == 2
    mike = next(u for u in listed["users"] if u["user_key"] == "mikechang")
    assert set(mike) == {"id", "username", "user_key", "last_activity", "enrolled_at", "last_seen_at"}
    assert mike["last_activity"]["at"] == "2026-02-24T21:23:53Z"
    assert mike["last_activity"]["desktop_at"] == "2026-02-24T21:23:53Z"
    assert mike["last_activity"]["web_at"] is None

    devices = client_a.get(f"/api/v1/devices?user_id={mike['id']}").json()
    assert [d["id"] for d in devices["devices"]] == [str(device.id)]
    assert client_a.get(f"/api/v1/users/{mike['id']}").json()["user_key"] == "mikechang"
    assert client_a.get("/api/v1/users").json()["total"] == 2


def test_providers_contribute_to_heartbeat_and_health(device, dclient):
    def directives(*, device, organization):
        return {"directives": [{"type": "sync"}], "pending_round_id": "round-18", "message": "Round 18 is waiting."}

    def quiet(*, device, organization):
        return {"directives": [{"type": "noop"}], "message": "ignored: the first message wins"}

    def health(*, device, organization):
        return {"drift": False, "failing_assignments": 0}

    registry.register_heartbeat_provider(directives)
    registry.register_heartbeat_provider(quiet)
    registry.register_health_provider(health)
    with rls.bypass(reason="test"):
        assert services.devices_attention(organization=device.organization, device_ids=[device.id]) == 1
    try:
        body = beat(dclient, device.device_id).json()
        assert body["directives"] == [{"type": "sync"}, {"type": "noop"}]
        assert body["pending_round_id"] == "round-18"
        assert body["message"] == "Round 18 is waiting."
        health_body = dclient.get(f"/api/v1/devices/{device.device_id}/health").json()
        assert health_body["drift"] is False and health_body["failing_assignments"] == 0
        assert health_body["connectivity_status"] == "online"
    finally:
        for fn in (directives, quiet, health):
            registry.unregister(fn)
    assert beat(dclient, device.device_id).json()["directives"] == []


def test_attention_runs_the_providers_once_then_clears(device, dclient):
    calls = []

    def provider(*, device, organization):
        calls.append(device.id)
        return {}

    registry.register_heartbeat_provider(provider)
    try:
        beat(dclient, device.device_id)  # a new device checks once for anything already waiting
        beat(dclient, device.device_id)
        assert calls == [device.id]  # then nothing pending: no provider runs
        with rls.bypass(reason="test"):
            services.devices_attention(organization=device.organization, device_ids=[device.id])
        beat(dclient, device.device_id)
        beat(dclient, device.device_id)
        assert calls == [device.id, device.id]  # ran once, found nothing, cleared the flag
        assert fresh(device).attention == 0
    finally:
        registry.unregister(provider)
