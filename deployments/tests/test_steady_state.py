"""The steady desired-state path: a 304 or an unchanged sync answered from the stored revision while
nothing the desired state is computed from has changed (deployments.freshness, PostgreSQL only)."""

import re

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps_catalog.models import App, CapabilitySlot, InferenceConfig, ModelCapability, ModelVariant
from apps_catalog.tests.factories import (
    AppFactory,
    CapabilitySlotFactory,
    InferenceConfigFactory,
    ModelCapabilityFactory,
)
from deployments import control, freshness, services
from deployments.models import CapabilityProfile, Deployment, DesiredGeneration, DeviceAssignment, DeviceState
from deployments.tests.factories import DeploymentFactory, public_variant
from devices.models import Device, DeviceToken
from devices.tests.conftest import Statements
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def app_device(org, register):
    """A device whose completed deployment belongs to an app with a serving slot and an inference
    config: its desired state reads every input table."""
    device, client = register(org, "cam-1", labels={"site": "berlin"})
    with rls.organization_context(org_id=org.id):
        app = AppFactory(organization=org)
        CapabilitySlotFactory(organization=org, app=app)
        InferenceConfigFactory(organization=org, app=app)
        dep = DeploymentFactory(organization=org, app=app, targeting={"device_ids": [str(device.id)]},
                                strategy={"type": "all_at_once"}, bindings={"phone_flagship": str(public_variant(index=1).id)})
        services.deployment_start(deployment=dep, actor=SYSTEM)
    return device, client, dep


def desired(client, device, etag=None, *, full=False):
    path = f"/api/v1/devices/{device.id}/desired-state" + ("?full" if full else "")
    return client.get(path, **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))


def sync(client, device, body, *, full=False):
    return client.post(f"/api/v1/devices/{device.id}/sync" + ("?full" if full else ""), body, format="json")


def captured(call):
    with Statements(connection) as statements:
        response = call()
    return response, statements


def is_steady(statements):
    """The credential function and one SELECT starting with the token's CTE: nothing recomputed."""
    return len(statements) == 2 and statements.sql[1].lstrip().startswith("WITH token AS")


def polled(client, device):
    """The first poll computes the content and stores what it was computed from; the first sync
    clears the flag a new device starts with (nothing waits for it)."""
    response = desired(client, device)
    assert response.status_code == 200, response.content
    revision = response.json()["revision"]
    assert sync(client, device, {"known_revision": revision}).status_code == 200
    return response["ETag"], revision


def test_304_and_unchanged_sync_answer_from_two_statements_as_the_full_path_does(app_device):
    device, client, _ = app_device
    etag, revision = polled(client, device)
    for weak in (False, True):
        tag = f"W/{etag}" if weak else etag
        steady, statements = captured(lambda: desired(client, device, tag))
        assert is_steady(statements), statements.sql
        full = desired(client, device, tag, full=True)
        assert steady.status_code == full.status_code == 304 and steady.content == full.content == b""
        for header in ("ETag", "Content-Type", "Allow", "Vary", "Content-Length"):
            assert steady.get(header) == full.get(header), header
    steady, statements = captured(lambda: sync(client, device, {"known_revision": revision, "acked_directives": []}))
    assert is_steady(statements), statements.sql
    full = sync(client, device, {"known_revision": revision}, full=True)
    assert steady.status_code == full.status_code == 200
    assert steady.json() == full.json() and list(steady.json()) == list(full.json())
    assert steady.json()["unchanged"] is True and "desired_state" not in steady.json()
    for header in ("Content-Type", "Allow", "Vary"):
        assert steady.get(header) == full.get(header), header


def test_the_steady_path_leaves_everything_else_to_the_full_path(org, app_device, register):
    device, client, _ = app_device
    etag, revision = polled(client, device)
    # An outdated ETag or revision: the content is needed.
    response, statements = captured(lambda: desired(client, device, '"stale"'))
    assert response.status_code == 200 and not is_steady(statements)
    response = sync(client, device, {"known_revision": revision - 1})
    assert response.json()["unchanged"] is False and response.json()["desired_state"]["revision"] == revision
    # Bodies the steady path does not read as the serializer would: the full path, with its answer.
    for body, status in (({"known_revision": "1"}, 200), ({"known_revision": True}, 400),
                         ({"known_revision": -1}, 400), ({"known_revision": revision, "extra": 1}, 400),
                         ({"known_revision": revision, "acked_directives": ["nope"]}, 400), ([revision], 400)):
        response, statements = captured(lambda: sync(client, device, body))
        assert response.status_code == status and not is_steady(statements), (body, response.content)
    # Another device's path: 404 from the full path.
    other, _ = register(org, "cam-2")
    assert desired(client, other, etag).status_code == 404
    # A command waits: the sync delivers it (full path), and the device acknowledges it.
    with rls.organization_context(org_id=org.id):
        command = control.command_create(device=device, organization=org, actor=SYSTEM, type="reboot")
    response, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert [d["id"] for d in response.json()["directives"]] == [str(command.id)] and not is_steady(statements)
    # A revoked token: 401 from the full path.
    with rls.bypass(reason="test"):
        DeviceToken.objects.filter(device=device).update(revoked_at=timezone.now())
    assert desired(client, device, etag).status_code == 401


def change_deployment(org, device, dep):
    Deployment.objects.filter(pk=dep.pk).update(status="rolled_back")


def change_assignment(org, device, dep):
    DeviceAssignment.objects.filter(deployment=dep, device=device).update(in_rollout=False)


def change_variant(org, device, dep):
    with rls.bypass(reason="test: a public variant"):
        ModelVariant.objects.filter(pk=dep.variant_id).update(artifact_url="https://models.example.com/v2.bin")


def change_capability(org, device, dep):
    with rls.bypass(reason="test: a global capability"):
        ModelCapability.objects.filter(pk=dep.capability_id).update(key="vision2")


def change_app(org, device, dep):
    App.objects.filter(pk=dep.app_id).update(slug="renamed")


def change_slot(org, device, dep):
    CapabilitySlot.objects.filter(app_id=dep.app_id).update(serving_policy={"routing": "cloud_only"})


def change_config(org, device, dep):
    InferenceConfig.objects.filter(app_id=dep.app_id).update(timeout_ms=1234)


def change_interval(org, device, dep):
    Device.objects.filter(pk=device.pk).update(heartbeat_interval_s=300)


def change_device_class(org, device, dep):
    CapabilityProfile.objects.update_or_create(
        device=device, defaults={"organization": org, "device_class": "phone_flagship", "classifier_version": "t",
                                 "computed_at": timezone.now()})


@pytest.mark.parametrize("change", [change_deployment, change_assignment, change_variant, change_capability,
                                    change_app, change_slot, change_config, change_interval, change_device_class])
def test_a_change_to_any_input_is_seen_by_the_next_poll(org, app_device, change):
    device, client, dep = app_device
    etag, revision = polled(client, device)
    before = desired(client, device).json()
    with rls.organization_context(org_id=org.id):
        change(org, device, dep)
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 200 and not is_steady(statements), change.__name__
    after = response.json()
    assert after["revision"] == revision + 1 and {**after, "revision": 0, "generated_at": 0} != {
        **before, "revision": 0, "generated_at": 0}
    assert sync(client, device, {"known_revision": revision}).json()["unchanged"] is False
    # Computed again: steady again.
    response, statements = captured(lambda: desired(client, device, response["ETag"]))
    assert response.status_code == 304 and is_steady(statements), change.__name__


def test_a_platform_change_recomputes_without_a_new_revision(org, app_device):
    """The platform is an input only through bindings: recomputed, the same content keeps its revision."""
    device, client, _ = app_device
    etag, revision = polled(client, device)
    with rls.organization_context(org_id=org.id):
        Device.objects.filter(pk=device.pk).update(platform="android")
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 304 and not is_steady(statements)
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 304 and is_steady(statements)


def test_a_status_report_or_a_profile_rescore_moves_no_generation(org, app_device):
    device, client, dep = app_device
    with rls.organization_context(org_id=org.id):
        change_device_class(org, device, dep)  # a profile exists, as the classifier leaves it
    etag, _ = polled(client, device)
    before = generation(org)
    report = {"revision": 1, "models": [{"variant_id": str(dep.variant_id), "status": "active"}]}
    assert client.post(f"/api/v1/devices/{device.id}/observed-state", report, format="json").status_code == 200
    with rls.organization_context(org_id=org.id):
        CapabilityProfile.objects.filter(device=device).update(scores={"x": 1}, classifier_version="t2")
    assert generation(org) == before
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 304 and is_steady(statements)


def generation(org):
    with rls.bypass(reason="test"):
        row = DesiredGeneration.objects.filter(organization=org).first()
    return row.value if row else 0


def test_every_table_the_content_reads_is_watched(org, app_device):
    """A new input table of the desired state must get the triggers, or polls would miss its changes."""
    device, _, _ = app_device
    with rls.organization_context(org_id=org.id):
        Device.objects.filter(pk=device.pk).update(platform="ios")
        change_device_class(org, device, None)  # bindings read the device and its profile
        with Statements(connection) as statements:
            control.desired_state(device=device, organization=org)
    read = {name for sql in statements.sql for name in re.findall(r'(?:FROM|JOIN)\s+"(\w+)"', sql)}
    watched = {table for table, _, _ in freshness.WATCHED}
    own = {DeviceState._meta.db_table, DesiredGeneration._meta.db_table, Device._meta.db_table}  # fingerprint
    assert {"apps_catalog_capabilityslot", "apps_catalog_inferenceconfig", "deployments_capabilityprofile"} <= read
    assert read - own <= watched, read - own - watched
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE 'fleet_desired_%%'")
        triggers = [table for (table,) in cursor.fetchall()]
    assert all(triggers.count(table) == 3 for table in watched), triggers


@pytest.mark.django_db(transaction=True)
def test_the_generation_moves_once_per_transaction_at_commit(org, other_org):
    with rls.organization_context(org_id=org.id):
        before = generation(org)
        for _ in range(3):
            AppFactory(organization=org)
        assert generation(org) == before  # deferred: nothing moves before commit
    assert generation(org) == before + 1
    other_before = generation(other_org)
    with transaction.atomic(), rls.bypass(reason="test: a new capability"):
        ModelCapabilityFactory()
    # rls.bypass ended before commit: the bump sets its own bypass. A global row counts for everyone.
    assert (generation(org), generation(other_org)) == (before + 2, other_before + 1)
    with transaction.atomic():
        rls.activate(org_ids=[org.id])
        AppFactory(organization=org)
        transaction.set_rollback(True)
    assert generation(org) == before + 2  # rolled back: no bump
    with transaction.atomic(), rls.bypass(reason="test: two organizations in one transaction"):
        for organization in (org, other_org, org):
            AppFactory(organization=organization)
    assert (generation(org), generation(other_org)) == (before + 3, other_before + 2)
    with connection.cursor() as cursor:  # nothing left behind in the scratch table
        cursor.execute(f"SELECT count(*) FROM {freshness.CHANGE_TABLE}")
        assert cursor.fetchone() == (0,)


@pytest.mark.usefixtures("rate_window")
def test_steady_polls_count_against_the_device_limit(app_device, settings):
    from django.core.cache import cache

    device, client, _ = app_device
    etag, revision = polled(client, device)  # 2 requests
    cache.clear()
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "device": "2/60"}
    assert desired(client, device, etag).status_code == 304
    assert sync(client, device, {"known_revision": revision}).status_code == 200
    response, statements = captured(lambda: desired(client, device, etag))
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert not is_steady(statements)  # the full path answers from the steady path's count
    cache.clear()


def test_a_drifting_device_gets_its_drift_from_the_steady_sync(app_device):
    device, client, dep = app_device
    etag, revision = polled(client, device)
    other = public_variant(index=2)
    report = {"revision": revision, "models": [{"variant_id": str(other.id), "status": "active"}]}
    assert client.post(f"/api/v1/devices/{device.id}/observed-state", report, format="json").json()["drift"] is True
    steady, statements = captured(lambda: sync(client, device, {"known_revision": revision}))
    assert is_steady(statements), statements.sql
    full = sync(client, device, {"known_revision": revision}, full=True)
    assert steady.json() == full.json() and steady.json()["drift"]["drifted"] == [
        {"capability": "vision", "desired": str(dep.variant_id), "observed": str(other.id)}]
