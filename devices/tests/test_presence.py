"""Steady heartbeats answered from Redis leases and flushed to PostgreSQL (devices.presence)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from devices import presence, services
from devices.models import Connectivity, Device, DeviceStatus, DeviceToken
from devices.tests.conftest import Statements, device_client
from devices.tests.factories import registered_device
from devices.tests.test_heartbeat import beat, is_steady, steady
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]

METRICS = {"cpu_usage_percent": 12.5, "battery_level": 80}


def fresh(device):
    with rls.bypass(reason="test"):
        return Device.objects.get(pk=device.pk)


def captured(call):
    with Statements(connection) as statements:
        response = call()
    return response, statements


@pytest.fixture
def leased(device, dclient, django_capture_on_commit_callbacks):
    """A steady device whose heartbeat lease is written: flush (presence alive), then one steady
    heartbeat on PostgreSQL, whose lease is stored when its transaction commits."""
    steady(dclient, device.device_id)
    presence.flush()
    with django_capture_on_commit_callbacks(execute=True):
        response, statements = captured(lambda: beat(dclient, device.device_id, {"status": "active"}))
    assert response.status_code == 200 and is_steady(statements), statements.sql
    return device, dclient


def test_a_leased_heartbeat_runs_no_sql_and_the_flush_applies_it(leased):
    device, dclient = leased
    before = fresh(device)
    response, statements = captured(lambda: beat(dclient, device.device_id, {"status": "active", "metrics": METRICS}))
    assert response.status_code == 200, response.content
    # No SQL, and no transaction either (inside the test's own, ATOMIC_REQUESTS would open a savepoint).
    assert len(statements) == 0 and not statements.transaction_control, statements.captured_queries
    answer = response.json()
    assert answer["connectivity_status"] == "online" and answer["status"] == "active"
    assert answer["next_heartbeat_in_s"] == before.heartbeat_interval_s
    assert fresh(device).last_metrics != METRICS  # PostgreSQL learns it at the flush

    assert presence.flush() == {"heartbeats": 1, "dropped": 0}
    after = fresh(device)
    assert after.last_metrics == METRICS
    assert after.last_heartbeat > before.last_heartbeat
    assert after.stale_at == after.last_heartbeat + timedelta(seconds=services.STALE_FACTOR * after.heartbeat_interval_s)
    assert after.offline_at == after.last_heartbeat + timedelta(
        seconds=services.OFFLINE_FACTOR * after.heartbeat_interval_s)


def test_leased_and_full_heartbeats_answer_alike(leased):
    device, dclient = leased
    body = {"status": "active", "metrics": METRICS}
    leased_answer = beat(dclient, device.device_id, body).json()
    full_answer = dclient.put(f"/api/v1/devices/{device.device_id}/heartbeat?full", body, format="json").json()
    assert {**leased_answer, "last_heartbeat": None} == {**full_answer, "last_heartbeat": None}


def test_the_lease_answers_for_the_device_by_uuid_too_and_for_no_other(leased, org):
    device, dclient = leased
    assert len(captured(lambda: beat(dclient, str(device.id)))[1]) == 0
    other = registered_device(org)
    response, statements = captured(lambda: beat(dclient, other.device_id))
    assert response.status_code == 404 and len(statements) > 0


@pytest.mark.parametrize("body", [{"status": "inactive"}, {"agent_version": "9.9.9"}])
def test_a_heartbeat_reporting_something_else_takes_postgresql(leased, body):
    device, dclient = leased
    response, statements = captured(lambda: beat(dclient, device.device_id, body))
    assert response.status_code == 200 and len(statements) > 2  # a transition: the full path
    assert fresh(device).status == body.get("status", "active")


def _suspend(device):
    with rls.organization_context(org_id=device.organization_id):
        services.device_update(device=fresh(device), actor=SYSTEM, status=DeviceStatus.INACTIVE)


def _flag(device):
    with rls.organization_context(org_id=device.organization_id):
        services.devices_attention(organization=device.organization, device_ids=[device.id])


def _stale(device):
    with rls.bypass(reason="test"):
        Device.objects.filter(pk=device.pk).update(connectivity_status=Connectivity.STALE)


def _interval(device):
    with rls.bypass(reason="test"):
        Device.objects.filter(pk=device.pk).update(heartbeat_interval_s=7)


def _revoke(device):
    with rls.bypass(reason="test"):
        DeviceToken.objects.filter(device=device).update(revoked_at=timezone.now())


def _rotate(device):
    with rls.organization_context(org_id=device.organization_id):
        services.device_token_issue(device=fresh(device), actor=SYSTEM)


@pytest.mark.parametrize("change", [_suspend, _flag, _stale, _interval, _revoke, _rotate])
def test_a_change_drops_the_lease_at_the_next_flush(leased, change):
    """Each change the steady path depends on (status, attention, connectivity, interval, the token)
    is recorded by a trigger; the flush drops the lease, and the next heartbeat takes PostgreSQL."""
    device, dclient = leased
    change(device)
    assert presence.flush()["dropped"] >= 1
    response, statements = captured(lambda: beat(dclient, device.device_id, {"status": "active"}))
    assert len(statements) > 0
    if change in (_revoke, _rotate):
        assert response.status_code == 401


def test_a_change_to_what_the_lease_does_not_hold_keeps_it(leased):
    device, dclient = leased
    with rls.bypass(reason="test"):
        Device.objects.filter(pk=device.pk).update(name="renamed", labels={"site": "paris"})
    assert presence.flush()["dropped"] == 0
    assert len(captured(lambda: beat(dclient, device.device_id))[1]) == 0


def test_a_queued_heartbeat_whose_device_changed_is_dropped_with_its_lease(leased):
    device, dclient = leased
    assert beat(dclient, device.device_id, {"metrics": METRICS}).status_code == 200  # queued
    _stale(device)
    assert presence.flush() == {"heartbeats": 0, "dropped": 1}
    assert fresh(device).last_metrics != METRICS


def test_a_lease_read_before_a_flush_is_not_written_after_it(device, dclient, django_capture_on_commit_callbacks):
    """The epoch: a change the flush consumed may postdate what the steady path read."""
    steady(dclient, device.device_id)
    presence.flush()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert beat(dclient, device.device_id).status_code == 200
    presence.flush()
    for callback in callbacks:
        callback()
    assert len(captured(lambda: beat(dclient, device.device_id))[1]) == 2  # no lease: PostgreSQL's steady path


def test_without_a_live_flush_every_heartbeat_takes_postgresql(leased):
    device, dclient = leased
    presence.client().delete(presence.ALIVE)
    assert is_steady(captured(lambda: beat(dclient, device.device_id))[1])


def test_the_flush_records_the_tokens_last_use_when_due(leased):
    device, dclient = leased
    long_ago = timezone.now() - timedelta(days=1)
    with rls.bypass(reason="test"):
        DeviceToken.objects.filter(device=device).update(last_used_at=long_ago)
    assert beat(dclient, device.device_id).status_code == 200
    presence.flush()
    with rls.bypass(reason="test"):
        assert DeviceToken.objects.get(device=device, revoked_at__isnull=True).last_used_at > long_ago


def test_the_sweep_flushes_first(leased):
    """A device answered from Redis is not moved to stale for want of its last-seen time in PostgreSQL."""
    device, dclient = leased
    long_ago = timezone.now() - timedelta(hours=1)
    with rls.bypass(reason="test"):  # as if PostgreSQL had not heard from it for an hour
        Device.objects.filter(pk=device.pk).update(last_heartbeat=long_ago, stale_at=long_ago, offline_at=long_ago)
    assert len(captured(lambda: beat(dclient, device.device_id))[1]) == 0
    services.devices_connectivity_sweep()
    after = fresh(device)
    assert after.connectivity_status == Connectivity.ONLINE and after.last_heartbeat > long_ago


def test_the_rate_limit_counts_leased_heartbeats_once(rate_window, leased, settings):
    device, dclient = leased
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "device": "5/60"}  # the fixture's three, then two more
    statuses = [beat(dclient, device.device_id).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]


def test_other_organizations_devices_cannot_use_a_lease(leased, other_org):
    """A lease is keyed by the token: another organization's device token has its own."""
    device, _ = leased
    other = registered_device(other_org)
    response, _ = captured(lambda: beat(device_client(other), device.device_id))
    assert response.status_code == 404


@pytest.mark.parametrize("service", ["device_token_issue", "device_revoke"])
def test_a_rotated_or_revoked_token_stops_answering_at_once(leased, service, django_capture_on_commit_callbacks):
    device, dclient = leased
    with django_capture_on_commit_callbacks(execute=True), rls.organization_context(org_id=device.organization_id):
        getattr(services, service)(device=fresh(device), actor=SYSTEM)
    assert beat(dclient, device.device_id).status_code == 401  # no flush in between
