"""The device control loop through the API, with real device tokens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import control, services
from deployments.models import DeviceAssignment, DeviceCommand
from deployments.tests.factories import DeploymentFactory, public_variant
from fleet.activity.models import ActivityEvent
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


@pytest.fixture
def rolled_out(org, register):
    """A device with a completed all-at-once deployment of a vision variant."""
    device, client = register(org, "cam-1", labels={"site": "berlin"})
    with rls.organization_context(org_id=org.id):
        dep = DeploymentFactory(organization=org, targeting={"selector": {"match_labels": {"site": "berlin"}}},
                                strategy={"type": "all_at_once"})
        services.deployment_start(deployment=dep, actor=SYSTEM)
    return device, client, dep


def test_desired_state_shape_revision_and_304(rolled_out):
    device, client, dep = rolled_out
    response = client.get(f"/api/v1/devices/{device.device_id}/desired-state")
    assert response.status_code == 200, response.content
    desired = response.json()
    assert desired["device_id"] == str(device.id) and desired["revision"] == 1
    [model] = desired["models"]
    assert model["variant_id"] == str(dep.variant_id) and model["deployment_id"] == str(dep.id)
    assert set(model) == {"capability", "model", "variant_id", "version", "format", "artifact_url", "sha256", "size_bytes", "deployment_id"}
    assert desired["policy"]["heartbeat_interval_s"] == device.heartbeat_interval_s
    etag = response["ETag"]
    again = client.get(f"/api/v1/devices/{device.id}/desired-state", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag
    assert client.get(f"/api/v1/devices/{device.id}/desired-state").json()["revision"] == 1  # unchanged content


def test_revision_increases_only_when_content_changes(org, rolled_out):
    device, client, dep = rolled_out
    first = client.get(f"/api/v1/devices/{device.id}/desired-state").json()["revision"]
    with rls.organization_context(org_id=org.id):
        services.deployment_rollback(deployment=dep, actor=SYSTEM, reason="test")
    response = client.get(f"/api/v1/devices/{device.id}/desired-state")
    assert response.json()["revision"] == first + 1 and response.json()["models"] == []


def test_observed_state_updates_assignments_and_drift_events(org, rolled_out):
    device, client, dep = rolled_out
    url = f"/api/v1/devices/{device.id}/observed-state"
    other = public_variant(index=1)
    drifting = client.post(url, {"revision": 1, "models": [{"variant_id": str(other.id), "status": "active"}]}, format="json")
    assert drifting.status_code == 200, drifting.content
    assert drifting.json()["drift"] is True
    assert drifting.json()["drifted"] == [{"capability": "vision", "desired": str(dep.variant_id), "observed": str(other.id)}]
    fixed = client.post(url, {"revision": 2, "models": [{"variant_id": str(dep.variant_id), "status": "active"}]}, format="json")
    assert fixed.json()["drift"] is False
    with rls.organization_context(org_id=org.id):
        assert DeviceAssignment.objects.get(deployment=dep, device=device).status == "active"
        verbs = list(ActivityEvent.objects.filter(device_ref=device.id).values_list("verb", flat=True))
    assert "device.drift_started" in verbs and "device.drift_ended" in verbs
    # A stale report (older revision) does not overwrite newer state.
    stale = client.post(url, {"revision": 1, "models": [{"variant_id": str(other.id), "status": "failed"}]}, format="json")
    assert stale.json()["drift"] is False
    with rls.organization_context(org_id=org.id):
        assert DeviceAssignment.objects.get(deployment=dep, device=device).status == "active"
    health = client.get(f"/api/v1/devices/{device.id}/health").json()
    assert health["drift"] is False and health["failing_assignments"] == []


def test_observed_state_bad_input(rolled_out):
    device, client, _ = rolled_out
    url = f"/api/v1/devices/{device.id}/observed-state"
    response = client.post(url, {"models": [{"variant_id": "nope", "status": "dancing"}]}, format="json")
    assert response.status_code == 400
    assert {"models.0.variant_id", "models.0.status"} <= set(response.json()["fields"])


def test_sync_unchanged_path_and_directives(org, rolled_out, make_client):
    device, client, _ = rolled_out
    first = client.post(f"/api/v1/devices/{device.id}/sync", {}, format="json").json()
    assert first["unchanged"] is False and first["desired_state"]["revision"] == first["revision"]
    operator = make_client(org, role="operator")
    command = operator.post(f"/api/v1/devices/{device.id}/commands", {"type": "reboot", "payload": {"delay_s": 5}}, format="json")
    assert command.status_code == 201, command.content
    second = client.post(f"/api/v1/devices/{device.id}/sync", {"known_revision": first["revision"]}, format="json").json()
    assert second["unchanged"] is True and "desired_state" not in second
    assert [d["type"] for d in second["directives"]] == ["reboot"]
    # Delivered but not acknowledged: delivered again; acknowledged: gone.
    third = client.post(f"/api/v1/devices/{device.id}/sync",
                        {"known_revision": first["revision"], "acked_directives": [second["directives"][0]["id"]]}, format="json").json()
    assert third["directives"] == []
    listed = operator.get(f"/api/v1/devices/{device.id}/commands").json()
    assert listed["commands"][0]["status"] == "acked" and listed["total"] == 1


def test_heartbeat_carries_directives(org, rolled_out, make_client):
    device, client, _ = rolled_out
    make_client(org).post(f"/api/v1/devices/{device.id}/commands", {"type": "sync_now"}, format="json")
    beat = client.put(f"/api/v1/devices/{device.id}/heartbeat", {"status": "active"}, format="json")
    assert beat.status_code == 200, beat.content
    assert [d["type"] for d in beat.json()["directives"]] == ["sync_now"]


def test_offline_device_catches_up_in_one_sync_without_stale_commands(org, rolled_out):
    device, client, _ = rolled_out
    with rls.organization_context(org_id=org.id):
        control.command_create(device=device, organization=org, actor=SYSTEM, type="upload_logs")
        stale = control.command_create(device=device, organization=org, actor=SYSTEM, type="reboot", expires_in_s=1)
        DeviceCommand.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    synced = client.post(f"/api/v1/devices/{device.id}/sync", {"known_revision": 0}, format="json").json()
    assert synced["unchanged"] is False and synced["desired_state"]["models"]
    assert [d["type"] for d in synced["directives"]] == ["upload_logs"]
    assert control.commands_expire() == 1


def test_command_bad_input_and_roles(org, rolled_out, make_client):
    device, client, _ = rolled_out
    operator = make_client(org, role="operator")
    url = f"/api/v1/devices/{device.id}/commands"
    assert operator.post(url, {"type": "selfdestruct"}, format="json").json()["fields"].keys() == {"type"}
    assert "expires_in_s" in operator.post(url, {"type": "reboot", "expires_in_s": 0}, format="json").json()["fields"]
    assert "payload" in operator.post(url, {"type": "custom", "payload": [1]}, format="json").json()["fields"]
    assert make_client(org, role="viewer").post(url, {"type": "reboot"}, format="json").status_code == 403
    assert client.post(url, {"type": "reboot"}, format="json").status_code == 403  # a device cannot command itself


def test_a_device_token_cannot_reach_another_device(org, rolled_out, register):
    _, client, _ = rolled_out
    other, _ = register(org, "cam-2")
    for path in ("desired-state", "sync", "observed-state"):
        method = client.get if path == "desired-state" else client.post
        assert method(f"/api/v1/devices/{other.id}/{path}", {}, format="json").status_code == 404


def test_hot_paths_run_a_fixed_number_of_queries(org, rolled_out, django_assert_max_num_queries):
    device, client, _ = rolled_out
    with rls.organization_context(org_id=org.id):
        for index in range(5):  # more deployments must not mean more queries
            dep = DeploymentFactory(organization=org, variant=public_variant(index=index % 3), environment="staging",
                                    targeting={"device_ids": [str(device.id)]}, strategy={"type": "all_at_once"})
            services.deployment_start(deployment=dep, actor=SYSTEM)
    client.get(f"/api/v1/devices/{device.id}/desired-state")
    with django_assert_max_num_queries(10) as desired:
        client.get(f"/api/v1/devices/{device.id}/desired-state")
    with django_assert_max_num_queries(12) as synced:
        client.post(f"/api/v1/devices/{device.id}/sync", {"known_revision": 1}, format="json")
    # No savepoint of their own: only the request's transaction (a savepoint inside the test's).
    for captured in (desired, synced):
        savepoints = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT")]
        assert len(savepoints) == 1, savepoints


def test_failures_reported_through_observed_state_roll_the_stage_back(org, register):
    """Devices in the first stage report `failed` in observed state; the beat task rolls back."""
    from deployments.models import DeploymentStatus, DeviceAssignment
    from deployments.tasks import deployments_evaluate

    clients = dict(register(org, f"edge-{i}", labels={"ring": "canary"}) for i in range(30))
    by_id = {device.id: (device, client) for device, client in clients.items()}
    with rls.organization_context(org_id=org.id):
        dep = DeploymentFactory(organization=org, targeting={"selector": {"match_labels": {"ring": "canary"}}},
                                strategy={"type": "staged", "stages": [50, 100],
                                          "health_gates": {"max_failure_rate": 0.25, "min_reporting_devices": 4}})
        services.deployment_start(deployment=dep, actor=SYSTEM)
        in_rollout = list(DeviceAssignment.objects.filter(deployment=dep, in_rollout=True).values_list("device_id", flat=True))
    assert len(in_rollout) >= 4  # about half of 30 devices
    for index, device_id in enumerate(in_rollout):
        device, client = by_id[device_id]
        failed = index % 2 == 0
        response = client.post(f"/api/v1/devices/{device.id}/observed-state",
                               {"revision": 1, "models": [{"variant_id": str(dep.variant_id),
                                                           "status": "failed" if failed else "active",
                                                           "error": "boot loop" if failed else ""}]},
                               format="json")
        assert response.status_code == 200
    deployments_evaluate()
    with rls.organization_context(org_id=org.id):
        dep.refresh_from_db()
    assert dep.status == DeploymentStatus.ROLLED_BACK and dep.status_reason.startswith("Failure rate")


@pytest.mark.postgres
def test_precompiled_winners_read_matches_the_orm_and_row_level_security(org, other_org, rolled_out):
    """fleet.db.JoinedRead builds instances as the ORM would (converted fields, related objects, None
    for an absent outer join), and the organization's policy filters it like any query."""
    from django.forms.models import model_to_dict

    from deployments.selectors import DEVICE_ASSIGNMENTS_READ, LIVE_STATUS_VALUES

    device, _, dep = rolled_out
    params = [org.id, device.id, *LIVE_STATUS_VALUES]
    with rls.organization_context(org_id=org.id):
        [(row, deployment, capability, variant, model, app)] = DEVICE_ASSIGNMENTS_READ.fetch(params)
        orm = DeviceAssignment.objects.select_related("deployment__capability", "deployment__variant__model").get(
            device=device, deployment=dep
        )
    assert model_to_dict(row) == model_to_dict(orm) and row.updated_at == orm.updated_at
    assert model_to_dict(deployment) == model_to_dict(orm.deployment)
    assert deployment.targeting == dep.targeting and isinstance(deployment.strategy, dict)
    assert (capability, variant, model) == (orm.deployment.capability, orm.deployment.variant, orm.deployment.variant.model)
    assert app is None  # a capability deployment: the LEFT JOIN found no app
    assert not row._state.adding
    with rls.organization_context(org_id=other_org.id):
        assert DEVICE_ASSIGNMENTS_READ.fetch(params) == []
