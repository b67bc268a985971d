"""Desired-state 304s and unchanged syncs answered from Redis leases (devices.presence)."""

import re

import pytest

from deployments import control
from devices import presence
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

from .test_steady_state import app_device, captured, change_deployment, desired, is_steady, polled, sync  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def leased(app_device, django_capture_on_commit_callbacks):  # noqa: F811
    """A polled device whose desired-state lease is written (flush first: presence is then alive)."""
    device, client, dep = app_device
    etag, revision = polled(client, device)
    presence.flush()
    with django_capture_on_commit_callbacks(execute=True):
        response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 304 and is_steady(statements)
    return device, client, dep, etag, revision


def test_304_and_unchanged_sync_from_the_lease_run_no_sql_and_answer_alike(leased):
    device, client, _, etag, revision = leased
    for tag in (etag, f"W/{etag}"):
        leased_answer, statements = captured(lambda: desired(client, device, tag))
        assert len(statements) == 0, statements.sql
        full = desired(client, device, tag, full=True)
        assert leased_answer.status_code == full.status_code == 304 and leased_answer.content == b""
        for header in ("ETag", "Content-Type", "Allow", "Vary", "Content-Length"):
            assert leased_answer.get(header) == full.get(header), header
    leased_answer, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert len(statements) == 0, statements.sql
    full = sync(client, device, {"known_revision": revision}, full=True)
    assert leased_answer.json() == full.json() and list(leased_answer.json()) == list(full.json())
    assert leased_answer.json()["unchanged"] is True


def test_another_etag_or_revision_takes_the_full_path(leased):
    device, client, _, etag, revision = leased
    response, statements = captured(lambda: desired(client, device, '"other"'))
    assert response.status_code == 200 and len(statements) > 2
    response, statements = captured(lambda: sync(client, device, {"known_revision": revision - 1}))
    assert response.json()["unchanged"] is False and len(statements) > 2


def test_a_new_generation_reaches_leased_devices_at_the_next_flush(org, leased):
    device, client, dep, etag, revision = leased
    with rls.organization_context(org_id=org.id):
        change_deployment(org, device, dep)
    # Until the flush publishes the organization's new generation, the lease still answers.
    assert len(captured(lambda: desired(client, device, etag))[1]) == 0
    presence.flush()
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 200 and response.json()["revision"] == revision + 1
    assert sync(client, device, {"known_revision": revision}).json()["unchanged"] is False


def test_a_drift_report_drops_the_lease(leased, django_capture_on_commit_callbacks):
    from deployments.tests.factories import public_variant

    device, client, dep, etag, revision = leased
    other = public_variant(index=2)
    report = {"revision": revision, "models": [{"variant_id": str(other.id), "status": "active"}]}
    assert client.post(f"/api/v1/devices/{device.id}/observed-state", report, format="json").json()["drift"] is True
    assert presence.flush()["dropped"] >= 1
    with django_capture_on_commit_callbacks(execute=True):
        response, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert is_steady(statements) and response.json()["drift"]["drift"] is True
    leased_answer, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert len(statements) == 0 and leased_answer.json() == response.json()


def test_a_waiting_command_reaches_the_next_sync_after_the_flush(org, leased):
    device, client, _, _, revision = leased
    with rls.organization_context(org_id=org.id):
        command = control.command_create(device=device, organization=org, actor=SYSTEM, type="reboot")
    presence.flush()
    response, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert [d["id"] for d in response.json()["directives"]] == [str(command.id)] and len(statements) > 2


def test_the_flush_publishes_every_organizations_generation(org, leased):
    presence.flush()
    published = presence.client().get(f"{presence.PUBLISHED}{control.PUBLISHED_GENERATION}{org.id}")
    with rls.bypass(reason="test"):
        expected = control.published_generations()[f"{control.PUBLISHED_GENERATION}{org.id}"]
    assert published is not None and int(published) == expected


def test_a_flush_sends_only_the_generations_that_changed_and_all_of_them_now_and_then(org, leased, monkeypatch):
    device, _, dep, _, _ = leased
    name = f"{control.PUBLISHED_GENERATION}{org.id}"
    key, redis = presence.PUBLISHED + name, presence.client()

    def generation():
        with rls.bypass(reason="test"):
            return control.published_generations()[name]

    def published_after_flush(before):
        redis.set(key, before)
        presence.flush()
        return int(redis.get(key))

    presence.flush()
    assert published_after_flush(-1) == -1  # unchanged since this process last sent it: not sent again
    with rls.organization_context(org_id=org.id):
        change_deployment(org, device, dep)
    assert published_after_flush(-1) == generation()  # changed: sent
    assert published_after_flush(-1) == -1
    monkeypatch.setattr(presence, "REPUBLISH_EVERY", 0)  # the periodic full send (keys evicted, lost or expiring)
    assert published_after_flush(-1) == generation()
    assert redis.ttl(key) > 0
    # Another process's flush, which read PostgreSQL later, published a higher one: never lowered.
    assert published_after_flush(generation() + 5) == generation() + 5


def watched(trigger):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = %s", [trigger])
        [definition] = cursor.fetchone()
    return set(re.findall(r"old\.(\w+)", definition, flags=re.IGNORECASE))


def test_every_column_a_lease_stands_for_is_watched():
    """What the PostgreSQL steady paths read of a device, its token and its state (but the keys, and the
    generation, which the flush publishes) is what the triggers watch: a change the lease does not
    see would be served from it."""
    from devices import services as device_services

    heartbeat, desired = device_services._steady_heartbeat_sql(), control._steady_sql()
    read = set(re.findall(r"\bd\.(\w+)", heartbeat + desired)) - {"id"}
    assert read and read <= watched("fleet_presence_device_update"), read - watched("fleet_presence_device_update")
    state = set(re.findall(r"\bs\.(\w+)", desired)) - {"device_id", "generation", "device_fingerprint"}
    assert state and state <= watched("fleet_presence_state_update"), state
    token = set(re.findall(r"\b(?:revoked_at|secret_hash|device_id)\b", device_services.STEADY_TOKEN_SQL))
    assert token <= watched("fleet_presence_token_update"), token
